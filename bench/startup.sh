#!/usr/bin/env bash
# Start-up time, idle memory and binary size of the release binary (issue 2's benchmark).
#
#   bench/startup.sh            # RUNS=11 by default; SKIP_BUILD=1 to use target/release as is
#
# Needs: cargo (to build), python3, curl. Builds `cargo build --release -p portcullis-cli` when
# the binary is missing or older than the sources. Everything listens on 127.0.0.1 only and every
# server it starts is stopped on exit.
#
# Measures:
#  (a) milliseconds from fork/exec of `portcullis serve` to the first 200 from GET /readyz
#      (bench/readyz_timer.py polls a new TCP connection every ~1 ms) on SQLite:
#        fresh      — an empty data directory each run (bootstrap: master key, migrations, first
#                     admin key)
#        existing   — the same, already bootstrapped data directory every run
#        fresh+demo — informational: `--demo` on an empty directory (adds an Argon2id hash)
#      and, as the floor, the time to exec `portcullis --version`;
#  (b) VmRSS (and VmHWM) of an idle server on an existing data directory, 1 s after /readyz, and
#      again 1 s after 600 requests (readyz, JWKS, discovery, admin list, client-credentials tokens)
#      over 8 keep-alive connections;
#  (c) the size of target/release/portcullis.
# Prints a JSON summary on stdout and writes it to target/bench/startup.json.

source "$(dirname "$0")/lib.sh"
bench_init

RUNS="${RUNS:-11}"
build_release
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"

time_readyz() { # MODE FILE → one ms figure per line into FILE
    local mode="$1" file="$2" i dir port extra=()
    local base
    mk_tmp base
    [ "$mode" = fresh-demo ] && extra=(--demo)
    if [ "$mode" = existing ]; then
        dir="$base/data"
        python3 "$BENCH_DIR/readyz_timer.py" "$BIN" "$dir" "$(free_port)" >/dev/null # bootstrap once
    fi
    for i in $(seq "$RUNS"); do
        [ "$mode" = existing ] || dir="$base/data-$i"
        port="$(free_port)"
        python3 "$BENCH_DIR/readyz_timer.py" "$BIN" "$dir" "$port" "${extra[@]}" >>"$file" \
            || die "readyz timing failed ($mode), see $dir.log"
    done
}

time_exec() { # floor: exec of the binary without serving
    python3 - "$BIN" "$RUNS" <<'EOF'
import subprocess, sys, time
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    subprocess.run([sys.argv[1], "--version"], stdout=subprocess.DEVNULL, check=True)
    print(f"{(time.perf_counter() - t) * 1000:.1f}")
EOF
}

declare -A MED ALL
mk_tmp SCRATCH
for mode in fresh existing fresh-demo; do
    log "readyz: $mode ($RUNS runs)"
    time_readyz "$mode" "$SCRATCH/$mode.txt"
    vals="$(cat "$SCRATCH/$mode.txt")"
    ALL[$mode]="$(echo "$vals" | tr '\n' ' ')"
    MED[$mode]="$(echo "$vals" | median)"
    log "  runs (ms): ${ALL[$mode]} → median ${MED[$mode]}"
done
vals="$(time_exec)"
ALL[exec]="$(echo "$vals" | tr '\n' ' ')"
MED[exec]="$(echo "$vals" | median)"
log "exec of 'portcullis --version' (ms): ${ALL[exec]} → median ${MED[exec]}"

# (b) idle memory
log "idle memory"
RSS_IDLE=(); RSS_AFTER=(); HWM_AFTER=()
mk_tmp base
# Bootstrap the data directory (and the demo environment, with its Argon2id hash) once, unmeasured.
start_server "$base/data" "$(free_port)" --demo
stop_server
for i in 1 2 3; do
    port="$(free_port)"
    start_server "$base/data" "$port" --demo
    sleep 1
    RSS_IDLE+=("$(rss_kib "$SERVER_PID")")
    ADMIN_KEY="$(admin_key "$base/data")"
    python3 - "$SERVER_URL" "$ADMIN_KEY" "$base/data/demo.txt" <<'EOF'
import base64, http.client, re, sys, threading
url, key, demo = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
sid, secret = re.search(r"-u (\S+):(\S+) ", demo).groups()
basic = "Basic " + base64.b64encode(f"{sid}:{secret}".encode()).decode()
host, port = url.split("//")[1].split(":")
reqs = [
    ("GET", "/readyz", None, {}),
    ("GET", "/e/demo/jwks.json", None, {}),
    ("GET", "/e/demo/.well-known/openid-configuration", None, {}),
    ("GET", "/admin/v1/environments", None, {"Authorization": f"Bearer {key}"}),
    ("POST", "/e/demo/oauth2/token", "grant_type=client_credentials",
     {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}),
]
bad = []
def worker():
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(75):
        m, p, b, h = reqs[i % len(reqs)]
        c.request(m, p, body=b, headers=h)
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append((p, r.status))
ts = [threading.Thread(target=worker) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit(f"unexpected answers: {bad[:5]}")
EOF
    sleep 1
    RSS_AFTER+=("$(rss_kib "$SERVER_PID")")
    HWM_AFTER+=("$(hwm_kib "$SERVER_PID")")
    stop_server
done
rss_idle="$(printf '%s\n' "${RSS_IDLE[@]}" | median)"
rss_after="$(printf '%s\n' "${RSS_AFTER[@]}" | median)"
hwm_after="$(printf '%s\n' "${HWM_AFTER[@]}" | median)"
log "VmRSS idle KiB: ${RSS_IDLE[*]} → median $rss_idle; after 600 requests: ${RSS_AFTER[*]} → $rss_after (VmHWM ${HWM_AFTER[*]})"

size="$(stat -c %s "$BIN")"

python3 - "$OUT_DIR/startup.json" <<EOF
import json, sys
kib = lambda v: round(float(v) / 1024, 1)
d = {
  "conditions": """$COND""",
  "runs": $RUNS,
  "readyz_ms": {
    "fresh": {"median": ${MED[fresh]}, "runs": "${ALL[fresh]}".split()},
    "existing": {"median": ${MED[existing]}, "runs": "${ALL[existing]}".split()},
    "fresh_demo": {"median": ${MED[fresh-demo]}, "runs": "${ALL[fresh-demo]}".split()},
    "exec_version": {"median": ${MED[exec]}, "runs": "${ALL[exec]}".split()},
  },
  "rss_mib": {
    "idle": kib($rss_idle), "idle_runs_kib": "${RSS_IDLE[*]}".split(),
    "after_requests": kib($rss_after), "after_runs_kib": "${RSS_AFTER[*]}".split(),
    "hwm_after_requests": kib($hwm_after),
  },
  "binary": {"bytes": $size, "mib": round($size / 1048576, 2)},
}
json.dump(d, open(sys.argv[1], "w"), indent=1)
print(json.dumps(d, indent=1))
EOF
