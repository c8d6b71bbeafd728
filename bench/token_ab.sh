#!/usr/bin/env bash
# Interleaved A/B comparison of server builds at the token endpoint: ES256 client credentials.
#
#   bench/token_ab.sh A_BIN B_BIN [C_BIN …]   # ROUNDS=5 DURATION=6 CONNECTIONS=64
#
# Differences of a few percent are below the drift of a shared machine between two runs of
# bench/token.sh minutes apart; here every build serves the same load in turn within each round
# (the order rotates round by round), so drift hits all builds alike. Every build runs its own
# server (SQLite, fresh data directory) pinned to SERVER_CPUS (default 0), wrk `-t1` pinned to
# WRK_CPUS (default 1); only one server is under load at a time. Per run: requests/s and server
# CPU per token (utime + stime from /proc, so the load generator is excluded). Prints per-build
# medians and ranges as JSON. Needs wrk (see bench/token.sh), taskset, python3, curl.

source "$(dirname "$0")/lib.sh"
bench_init
export -n PORTCULLIS_BIN 2>/dev/null || true

[ "$#" -ge 2 ] || die "usage: bench/token_ab.sh A_BIN B_BIN [C_BIN …]"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-6}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$DURATION" =~ ^[1-9][0-9]*$ ]] \
    || die "ROUNDS and DURATION are positive whole numbers"
# HALT_POLL_NS=200000: idle vCPUs poll before halting (Linux's default), for this run only.
[ -z "${HALT_POLL_NS:-}" ] || set_halt_poll "$HALT_POLL_NS"
CONNECTIONS="${CONNECTIONS:-64}"
SERVER_CPUS="${SERVER_CPUS:-0}"
WRK_CPUS="${WRK_CPUS:-1}"
command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
command -v taskset >/dev/null || die "taskset (util-linux) is missing"
log "$(conditions | tr '\n' ' ')"

mk_tmp SCRATCH
BINS=("$@")
URLS=() PIDS=() BASICS=()
for i in "${!BINS[@]}"; do
    [ -x "${BINS[$i]}" ] || die "not an executable: ${BINS[$i]}"
    printf '#!/usr/bin/env bash\nexec taskset -c %q %q "$@"\n' "$SERVER_CPUS" "${BINS[$i]}" >"$SCRATCH/pinned-$i"
    chmod +x "$SCRATCH/pinned-$i"
    BIN="$SCRATCH/pinned-$i"
    start_server "$SCRATCH/data-$i" "$(free_port)" --demo
    ADMIN_KEY="$(admin_key "$SCRATCH/data-$i")"
    api POST /admin/v1/environments '{"slug":"bench-es256","signing_alg":"ES256"}' >/dev/null \
        || die "creating the environment on ${BINS[$i]}: HTTP $(api_status)"
    out="$(api POST /admin/v1/environments/bench-es256/clients \
        '{"name":"bench svc","grant_types":["client_credentials"],"scopes":["read"],"token_endpoint_auth_method":"client_secret_basic"}')" \
        || die "creating the client on ${BINS[$i]}: HTTP $(api_status)"
    BASICS+=("$(printf '%s:%s' "$(echo "$out" | json_get '["id"]')" "$(echo "$out" | json_get '["client_secret"]')" | base64 -w0)")
    URLS+=("$SERVER_URL")
    PIDS+=("$SERVER_PID")
    log "build $i: ${BINS[$i]} on $SERVER_URL (pid $SERVER_PID, CPUs $SERVER_CPUS)"
done

cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
run() { # BUILD_INDEX DURATION LABEL
    local i="$1" before after
    before="$(cpu_of "${PIDS[$i]}")"
    BENCH_BASIC="${BASICS[$i]}" taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"$2s" --latency \
        -s "$BENCH_DIR/token.lua" "${URLS[$i]}/e/bench-es256/oauth2/token" >"$SCRATCH/wrk-$3.txt"
    after="$(cpu_of "${PIDS[$i]}")"
    echo "$before $after" >"$SCRATCH/cpu-$3.txt"
}

for i in "${!BINS[@]}"; do run "$i" 2 "warmup-$i"; done
n="${#BINS[@]}"
for r in $(seq "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
        i=$(((k + r) % n))
        run "$i" "$DURATION" "$i-$r"
        log "round $r build $i: $(grep -E 'Requests/sec' "$SCRATCH/wrk-$i-$r.txt" | tr -s ' ')"
    done
done

python3 - "$SCRATCH" "$ROUNDS" "${BINS[@]}" <<'PY'
import json, re, statistics, sys
d, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = []
for i, b in enumerate(bins):
    rps, us, errors = [], [], 0
    for r in range(1, rounds + 1):
        t = open(f"{d}/wrk-{i}-{r}.txt").read()
        n = int(re.search(r"(\d+) requests in", t).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        errors += int(m.group(1)) if m else 0
        before, after = map(float, open(f"{d}/cpu-{i}-{r}.txt").read().split())
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        us.append(round((after - before) / n * 1e6, 1))
    out.append({"build": b, "rps_median": statistics.median(rps), "rps_runs": rps,
                "server_cpu_us_per_token_median": statistics.median(us), "server_cpu_us_per_token_runs": us,
                "errors": errors})
print(json.dumps(out, indent=1))
PY
