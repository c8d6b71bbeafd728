#!/usr/bin/env bash
# Token issuance benchmarks (issue 3's benchmark).
#
#   bench/token.sh     # RUNS=3 wrk runs of DURATION=10 s per algorithm, CONNECTIONS=64
#
# Load generator: wrk (https://github.com/wg/wrk), the Debian package `wrk`:
#     apt-get install -y wrk
# The script installs it with apt-get when it is missing and it runs as root (INSTALL_WRK=0 to
# refuse). Also needs python3, curl and cargo; optionally `openssl` for a cross-check.
#
# 1. Raw signing rate: bench/sign-rate (a standalone Cargo package, not a workspace member)
#    signs a 420-byte JWS signing input with aws-lc-rs — the library, version, key types and calls
#    the server uses — for 3 s on one thread and 3 s on two, per algorithm. As a labelled
#    cross-check, `openssl speed` for ecdsap256, ed25519 and rsa2048 (OpenSSL, not aws-lc).
# 2. Client credentials: a server on SQLite (`serve --demo`, fresh data directory), one
#    environment per algorithm (ES256, EdDSA, RS256) created through the admin API, each with a
#    confidential client_secret_basic client; then per algorithm a 2 s warm-up and RUNS runs of
#    `wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency -s bench/token.lua`
#    → requests/s, p50 and p99 latency (medians over the runs). wrk runs on the same 2-core machine
#    as the server and takes CPU from it.
#    Then, for reference under the same wrk settings, RUNS × REF_DURATION (5) s of GET /healthz
#    (the HTTP ceiling of this machine with wrk beside the server) and GET /e/{env}/jwks.json
#    (one SQLite read per request).
#    Target (issue 3): ES256 requests/s ≥ 40% of the raw two-core signing rate; p99 < 10 ms at
#    64 connections. On a two-core machine the rate is read against the server's own CPUs
#    (docs/decisions/0012): HALT_POLL_NS=200000 SERVER_CPUS=0 WRK_CPUS=1 bench/token.sh.
# 3. Authorization code: bench/authcode_load.py runs full browser flows on the demo environment
#    (authorize → login page → email → password (Argon2id) → 303 with code → token with PKCE
#    verifier), a fresh cookie jar per flow, AUTHCODE_CONCURRENCY keep-alive connections,
#    at most AUTHCODE_FLOWS flows or 15 s per run, RUNS runs → flows/s (median).
#
# CPU placement. By default wrk and the server share every core, as they would on a small box, and
# wrk's own CPU use (a large share: /healthz alone saturates the two cores) is charged against the
# endpoint. Two honest views are reported beside the shared figure:
#  - tokens per second of server CPU time (utime + stime of the server process from /proc), with
#    the load generator's cost excluded whatever the placement;
#  - SERVER_CPUS=0 WRK_CPUS=1 (taskset lists): server and load generator each pinned to CPUs of
#    their own (the server's runtime then sizes its worker pool to its CPUs). Requests/s are then
#    the server's throughput on those CPUs, to be read against the single-core signing rate times
#    the number of server CPUs. WRK_THREADS defaults to the number of WRK_CPUS when pinned.
# Idle vCPUs: on a KVM guest booted with haltpoll.guest_halt_poll_ns=0 (this project's machines),
# waking a thread on an idle vCPU costs the waker a trip through the host. With wrk pinned apart,
# its vCPU idles between bursts, and the server pays ≈ 10 µs per ES256 token more than with
# polling (perf: 15% of its CPU in the wake-up under the response's `writev`). HALT_POLL_NS=200000 restores
# Linux's default polling for the run (root; restored on exit); the setting is in the output.
# The machine's load average is logged before and after each algorithm (`uptime`): other work on a
# shared machine shows there. Everything listens on 127.0.0.1 only; the server is stopped on exit.
# Prints a JSON summary and writes target/bench/token.json.

source "$(dirname "$0")/lib.sh"
bench_init
# HALT_POLL_NS=200000: idle vCPUs poll before halting (Linux's default), for this run only.
[ -z "${HALT_POLL_NS:-}" ] || set_halt_poll "$HALT_POLL_NS"
# PORTCULLIS_BIN (another binary, e.g. a build to compare against) is read by lib.sh; the server
# must not inherit it, or it refuses to start on an unknown PORTCULLIS_* key.
export -n PORTCULLIS_BIN 2>/dev/null || true

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
# ALGS="ES256" limits a rerun to the algorithms named (the raw signing rate is measured for all).
ALGS="${ALGS:-ES256 EdDSA RS256}"
SERVER_CPUS="${SERVER_CPUS:-}"
WRK_CPUS="${WRK_CPUS:-}"
cpu_count() { # a taskset CPU list ("0", "0,1", "0-3") → number of CPUs
    python3 -c 'import sys; print(sum(int(b) - int(a) + 1 if "-" in p else 1 for p in sys.argv[1].split(",") for a, _, b in [p.partition("-")]))' "$1"
}
if [ -n "$WRK_CPUS" ]; then
    WRK_THREADS="${WRK_THREADS:-$(cpu_count "$WRK_CPUS")}"
    WRK=(taskset -c "$WRK_CPUS" wrk)
else
    WRK_THREADS="${WRK_THREADS:-2}"
    WRK=(wrk)
fi
AUTHCODE_FLOWS="${AUTHCODE_FLOWS:-400}"
AUTHCODE_CONCURRENCY="${AUTHCODE_CONCURRENCY:-4}"
[ "$DURATION" -le 15 ] || die "DURATION is at most 15 s"

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && [ "${INSTALL_WRK:-1}" = 1 ]; then
        log "installing wrk (apt-get install -y wrk)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2 || die "apt-get install wrk failed"
    else
        die "wrk is missing: apt-get install -y wrk"
    fi
fi

build_release
SIGN_BIN="$ROOT/target/bench-sign-rate/release/portcullis-bench-sign-rate"
log "building bench/sign-rate (aws-lc-rs signing rate)"
(cd "$BENCH_DIR/sign-rate" && CARGO_TARGET_DIR="$ROOT/target/bench-sign-rate" cargo build --release -q >&2) \
    || die "building bench/sign-rate failed"
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"
SERVER_CPU_COUNT="$(if [ -n "$SERVER_CPUS" ]; then cpu_count "$SERVER_CPUS"; else nproc; fi)"
PLACEMENT="server on CPUs ${SERVER_CPUS:-all}, wrk (${WRK_THREADS} threads) on CPUs ${WRK_CPUS:-all}"
log "placement: $PLACEMENT"
command -v taskset >/dev/null || [ -z "$SERVER_CPUS$WRK_CPUS" ] || die "SERVER_CPUS/WRK_CPUS need taskset (util-linux)"

mk_tmp SCRATCH

# --- 1. raw signing rate -------------------------------------------------------------------------
log "raw signing rate (aws-lc-rs, 3 s per algorithm and thread count)"
"$SIGN_BIN" 3 2 | tee "$SCRATCH/sign.jsonl" >&2
if command -v openssl >/dev/null && [ "${OPENSSL_CROSSCHECK:-1}" = 1 ]; then
    log "cross-check: openssl speed -seconds 3 ecdsap256 ed25519 rsa2048 ($(openssl version))"
    openssl speed -seconds 3 ecdsap256 ed25519 rsa2048 2>/dev/null >"$SCRATCH/openssl.txt" || true
    grep -E '^ *(rsa +2048|256 bits ecdsa|253 bits EdDSA)' "$SCRATCH/openssl.txt" >&2 || true
fi

# --- 2. client credentials -----------------------------------------------------------------------
mk_tmp DATA
PORT="$(free_port)"
if [ -n "$SERVER_CPUS" ]; then
    # `exec` keeps the server's PID, which the CPU accounting below reads.
    printf '#!/usr/bin/env bash\nexec taskset -c %q %q "$@"\n' "$SERVER_CPUS" "$BIN" >"$DATA/pinned-server"
    chmod +x "$DATA/pinned-server"
    BIN="$DATA/pinned-server"
fi
start_server "$DATA/data" "$PORT" --demo
ADMIN_KEY="$(admin_key "$DATA/data")"
log "server on $SERVER_URL (pid $SERVER_PID), SQLite in $DATA/data"

# make_client ENV_SLUG → sets BASIC (base64 of id:secret)
make_client() {
    local env="$1" out id secret
    if out="$(api POST "/admin/v1/environments/$env/clients" \
        '{"name":"bench svc","grant_types":["client_credentials"],"scopes":["read"],"token_endpoint_auth_method":"client_secret_basic"}')"; then
        id="$(echo "$out" | json_get '["id"]')"
        secret="$(echo "$out" | json_get '["client_secret"]')"
    else
        die "POST /admin/v1/environments/$env/clients answered HTTP $(api_status): $out"
    fi
    BASIC="$(printf '%s:%s' "$id" "$secret" | base64 -w0)"
}

# CPU seconds (user + system) the server process has used so far.
server_cpu() {
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$SERVER_PID/stat"
}

run_wrk() { # LABEL DURATION → wrk output in $SCRATCH/wrk-LABEL.txt, server CPU in cpu-LABEL.txt
    local before after
    before="$(server_cpu)"
    BENCH_BASIC="$BASIC" "${WRK[@]}" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$2s" --latency \
        -s "$BENCH_DIR/token.lua" "$SERVER_URL/e/$ENV/oauth2/token" >"$SCRATCH/wrk-$1.txt"
    after="$(server_cpu)"
    # Tokens per second of server CPU: what the server does per core of its own, with the load
    # generator's CPU excluded (unpinned, wrk shares the cores with it).
    python3 - "$SCRATCH/wrk-$1.txt" "$before" "$after" "$2" >"$SCRATCH/cpu-$1.txt" <<'EOF2'
import json, re, sys
text = open(sys.argv[1]).read()
reqs = int(re.search(r"(\d+) requests in", text).group(1))
cpu = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"requests": reqs, "server_cpu_s": round(cpu, 3),
                  "tokens_per_server_cpu_s": round(reqs / cpu) if cpu else 0,
                  "server_cpu_us_per_token": round(cpu / reqs * 1e6, 1) if reqs else None}))
EOF2
}

for alg in $ALGS; do
    ENV="bench-$(echo "$alg" | tr 'A-Z' 'a-z')"
    api POST /admin/v1/environments "{\"slug\":\"$ENV\",\"signing_alg\":\"$alg\"}" >/dev/null \
        || die "creating environment $ENV: HTTP $(api_status)"
    make_client "$ENV"
    code="$(curl -s -o "$SCRATCH/probe.json" -w '%{http_code}' -H "Authorization: Basic $BASIC" \
        -d grant_type=client_credentials "$SERVER_URL/e/$ENV/oauth2/token")"
    [ "$code" = 200 ] || die "token probe on $ENV answered $code: $(cat "$SCRATCH/probe.json")"
    python3 - "$SCRATCH/probe.json" "$alg" <<'EOF'
import base64, json, sys
tok = json.load(open(sys.argv[1]))["access_token"]
h = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
assert h["alg"] == sys.argv[2], f"token signed with {h['alg']}, expected {sys.argv[2]}"
EOF
    log "client credentials $alg: warm-up 2 s, then $RUNS × ${DURATION}s at $CONNECTIONS connections; $(uptime)"
    uptime >"$SCRATCH/uptime-$alg-before.txt"
    run_wrk "$alg-warmup" 2
    for i in $(seq "$RUNS"); do
        run_wrk "$alg-$i" "$DURATION"
        log "  $alg run $i: $(grep -E 'Requests/sec' "$SCRATCH/wrk-$alg-$i.txt" | tr -s ' ')" \
            "p50 $(awk '$1=="50%" {print $2}' "$SCRATCH/wrk-$alg-$i.txt")" \
            "p99 $(awk '$1=="99%" {print $2}' "$SCRATCH/wrk-$alg-$i.txt")" \
            "$(grep -E 'Non-2xx|Socket errors' "$SCRATCH/wrk-$alg-$i.txt" | tr -s ' ' || true)" \
            "— $(cat "$SCRATCH/cpu-$alg-$i.txt")"
    done
    uptime >"$SCRATCH/uptime-$alg-after.txt"
done
RSS_AFTER_WRK="$(rss_kib "$SERVER_PID")"

# Reference points under the same wrk settings, to read the figures above against: the ceiling
# of this machine's HTTP path with wrk beside the server (GET /healthz: no storage, no crypto),
# and one uncached SQLite read per request (GET /e/{env}/jwks.json reads the environment row).
REF_DURATION="${REF_DURATION:-5}"
log "reference endpoints: $RUNS × ${REF_DURATION}s each of /healthz and /e/bench-es256/jwks.json"
for ref in healthz jwks; do
    path=/healthz
    [ "$ref" = jwks ] && path=/e/bench-es256/jwks.json
    for i in $(seq "$RUNS"); do
        "${WRK[@]}" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${REF_DURATION}s" --latency "$SERVER_URL$path" >"$SCRATCH/ref-$ref-$i.txt"
        log "  $path run $i: $(grep -E 'Requests/sec' "$SCRATCH/ref-$ref-$i.txt" | tr -s ' ')"
    done
done

# --- 3. authorization code round trip ------------------------------------------------------------
# AUTHCODE=0 skips this part (a rerun of the token figures alone).
if [ "${AUTHCODE:-1}" = 1 ]; then
log "authorization code round trips: $RUNS runs of ≤$AUTHCODE_FLOWS flows / 15 s, $AUTHCODE_CONCURRENCY connections"
python3 "$BENCH_DIR/authcode_load.py" "$SERVER_URL" "$DATA/data/demo.txt" 8 2 >/dev/null \
    || die "authorization code warm-up failed"
for i in $(seq "$RUNS"); do
    python3 "$BENCH_DIR/authcode_load.py" "$SERVER_URL" "$DATA/data/demo.txt" "$AUTHCODE_FLOWS" "$AUTHCODE_CONCURRENCY" 15 \
        >"$SCRATCH/authcode-$i.json" || die "authorization code run $i failed: $(cat "$SCRATCH/authcode-$i.json")"
    log "  run $i: $(cat "$SCRATCH/authcode-$i.json")"
done
fi
stop_server

python3 - "$SCRATCH" "$OUT_DIR/token.json" <<EOF
import glob, json, os, re, statistics, sys
d = sys.argv[1]
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
def wrk(path):
    t = open(path).read()
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", t, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    sock = re.search(r"Socket errors: (.*)", t)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)),
            "p50_ms": ms(lat["50"]), "p99_ms": ms(lat["99"]),
            "requests": int(re.search(r"(\d+) requests in", t).group(1)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sock.group(1) if sock else None}
sign = {j["alg"]: j for j in map(json.loads, open(os.path.join(d, "sign.jsonl")))}
openssl = {}
if os.path.exists(os.path.join(d, "openssl.txt")):
    for line in open(os.path.join(d, "openssl.txt")):
        m = re.match(r"\s*rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)", line)
        if m: openssl["RS256"] = float(m.group(1))
        m = re.match(r"\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", line)
        if m: openssl["ES256"] = float(m.group(1))
        m = re.match(r"\s*253 bits EdDSA \(Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)", line)
        if m: openssl["EdDSA"] = float(m.group(1))
out = {"conditions": """$COND""", "wrk": "$(wrk --version 2>&1 | head -1 | cut -c1-60)",
       "placement": "$PLACEMENT", "guest_halt_poll_ns": "$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo n/a)", "server_cpus": "${SERVER_CPUS:-all}", "wrk_cpus": "${WRK_CPUS:-all}",
       "connections": $CONNECTIONS, "wrk_threads": $WRK_THREADS, "duration_s": $DURATION, "runs": $RUNS,
       "server_rss_mib_after_wrk": round($RSS_AFTER_WRK / 1024, 1), "client_credentials": {}}
for alg in "$ALGS".split():
    runs = [wrk(os.path.join(d, f"wrk-{alg}-{i}.txt")) for i in range(1, $RUNS + 1)]
    cpu = [json.load(open(os.path.join(d, f"cpu-{alg}-{i}.txt"))) for i in range(1, $RUNS + 1)]
    s = sign[alg]["single_core_per_s"]
    rps = statistics.median(r["rps"] for r in runs)
    per_cpu = statistics.median(c["tokens_per_server_cpu_s"] for c in cpu)
    up = lambda w: open(os.path.join(d, f"uptime-{alg}-{w}.txt")).read().strip()
    out["client_credentials"][alg] = {
        "load_before": up("before"), "load_after": up("after"),
        "tokens_per_server_cpu_s_median": per_cpu,
        "tokens_per_server_cpu_s_runs": [c["tokens_per_server_cpu_s"] for c in cpu],
        "server_cpu_us_per_token_median": statistics.median(c["server_cpu_us_per_token"] for c in cpu),
        # Tokens per server-CPU second ÷ single-core signing rate: the share of the server's CPU
        # that goes to signing, and equally the share of 2 × the single-core rate the server
        # would reach with both cores to itself (no load generator on them).
        "per_server_cpu_share_of_single_core": round(per_cpu / s, 3),
        "rps_median": rps, "rps_runs": [r["rps"] for r in runs],
        "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
        "p99_ms_runs": [r["p99_ms"] for r in runs],
        "errors": sum(r["non_2xx"] for r in runs), "socket_errors": [r["socket_errors"] for r in runs],
        "sign_single_core_per_s": s, "sign_two_threads_measured_per_s": sign[alg]["measured_multi_per_s"],
        "openssl_sign_single_core_per_s": openssl.get(alg),
        "share_of_2x_single_core": round(rps / (2 * s), 3),
        # Pinned runs: requests/s against the single-core rate times the server's own CPUs.
        "server_cpu_count": $SERVER_CPU_COUNT,
        "share_of_server_cpus_x_single_core": round(rps / ($SERVER_CPU_COUNT * s), 3),
    }
out["reference"] = {}
for ref in ["healthz", "jwks"]:
    runs = [wrk(os.path.join(d, f"ref-{ref}-{i}.txt")) for i in range(1, $RUNS + 1)]
    out["reference"][ref] = {"rps_median": statistics.median(r["rps"] for r in runs), "rps_runs": [r["rps"] for r in runs],
                             "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
                             "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
                             "errors": sum(r["non_2xx"] for r in runs), "duration_s": $REF_DURATION}
ac = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, "authcode-*.json")))]
out["authorization_code"] = None if not ac else {
    "flows_per_s_median": statistics.median(a["per_second"] for a in ac),
    "flows_per_s_runs": [a["per_second"] for a in ac],
    "flow_p50_ms_median": statistics.median(a["p50_ms"] for a in ac),
    "flow_p99_ms_median": statistics.median(a["p99_ms"] for a in ac),
    "concurrency": $AUTHCODE_CONCURRENCY, "flows": [a["flows"] for a in ac],
    "errors": sum(a["errors"] for a in ac),
    "step_median_ms": {k: statistics.median(a["step_median_ms"][k] for a in ac) for k in ac[0]["step_median_ms"]},
}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out, indent=1))
EOF
