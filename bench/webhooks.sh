#!/usr/bin/env bash
# Webhook delivery benchmark (issue 6): events written/s and deliveries/s to a fast local
# receiver, and end-to-end delivery latency when idle, on SQLite and PostgreSQL.
#
#   bench/webhooks.sh        # N=10000 events per run, CONCURRENCY=8 writers, BACKENDS="sqlite postgres";
#                            # about 15 minutes per backend on 2 cores
#
# Needs: python3, curl, wrk (optional: the receiver's own ceiling), PostgreSQL's server binaries
# for the postgres backend (Debian `postgresql`). Everything listens on 127.0.0.1 only; servers,
# the receiver and the throwaway PostgreSQL cluster are stopped on exit.
#
# Receiver: `bench/webhook_load.py receiver` — one asyncio process, hand-parsed HTTP/1.1
# keep-alive, answers 204 and records the arrival time (CLOCK_MONOTONIC) per webhook-id. Its own
# ceiling is measured first with wrk (4 and 16 connections, 4 s each) so the figures below can
# be read against it.
#
# 1. Throughput, per configuration in CONFIGS ("label:endpoints:per_endpoint_in_flight:max_in_flight:poll_ms:writes"):
#    a fresh server (`serve --demo`, fresh data directory or PostgreSQL database), one environment
#    whose egress policy allows http://127.0.0.1:RPORT for webhooks, ENDPOINTS webhook endpoints on
#    the receiver (/in/0, /in/1, …; each event is delivered once per endpoint), the dispatcher
#    settings passed as PORTCULLIS_WEBHOOK_* environment variables. `writes` is one of:
#    - max: a warm-up of WARMUP events, then N organization creates (one `organization.created`
#      event each) from CONCURRENCY keep-alive writers as fast as the admin API answers, and a wait
#      (≤ DRAIN_S) until every delivery has arrived. Reported: events written/s; deliveries/s over
#      the whole run (first write → last arrival), while the writes ran, in the steady part (10th →
#      90th percentile of arrivals) and while draining the backlog left when the writes ended;
#      end-to-end latency under load; server CPU by thread group.
#    - rate=R: the same with the creates paced at R events/s (open loop): whether the dispatcher
#      keeps up with a steady flow of R × ENDPOINTS deliveries/s (the backlog stays small).
#    - drain: the N events are written with the dispatcher off (PORTCULLIS_WEBHOOK_DISPATCHER=false),
#      then a new server process on the same data delivers the N × ENDPOINTS backlog with no
#      writes running: the dispatcher's own capacity, and how it changes as the backlog shrinks.
# 2. Idle latency, per configuration in IDLE_CONFIGS: one endpoint, IDLE_SAMPLES creates one at a
#    time, each followed by a wait for its delivery and a random pause of 0.1–0.6 s (so writes
#    land at every phase of the poll timer); latency = arrival at the receiver − the moment the
#    client read the admin API's answer; p50/p99. With the default poll interval (250 ms) and the
#    smallest one allowed (10 ms): the event's commit wakes the dispatcher of the node that wrote
#    it, so the poll interval should not show here (it bounds the latency of other nodes).
# Prints a JSON summary and writes target/bench/webhooks.json.

source "$(dirname "$0")/lib.sh"
bench_init
# lib.sh has read PORTCULLIS_BIN into $BIN; the server refuses unknown PORTCULLIS_* variables, so
# it must not inherit this one.
export -n PORTCULLIS_BIN 2>/dev/null || true

N="${N:-10000}"
CONCURRENCY="${CONCURRENCY:-8}"
WARMUP="${WARMUP:-300}"
DRAIN_S="${DRAIN_S:-240}"
IDLE_SAMPLES="${IDLE_SAMPLES:-200}"
BACKENDS="${BACKENDS:-sqlite postgres}"
# label:endpoints:per_endpoint_in_flight:max_in_flight:poll_ms:writes, writes = max (as fast as
# the admin API answers), rate=R (paced at R events/s), or drain (the N events are written with
# the dispatcher off, then a new server process delivers the backlog with no writes running).
CONFIGS="${CONFIGS:-default:1:4:64:250:max per-endpoint-32:1:32:64:250:max 4-endpoints:4:4:64:250:max \
4-endpoints-16:4:16:64:250:max 8-endpoints-8:8:8:64:250:max paced-4x500-16:4:16:64:250:rate=500 \
drain-default:1:4:64:250:drain drain-per-endpoint-32:1:32:64:250:drain drain-4-endpoints-16:4:16:64:250:drain}"
IDLE_CONFIGS="${IDLE_CONFIGS:-idle-poll-250:1:4:64:250 idle-poll-10:1:4:64:10}"
[ "$N" -le 20000 ] || die "N is at most 20000"
[ "$DRAIN_S" -le 600 ] || die "DRAIN_S is at most 600"

build_release
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"

mk_tmp SCRATCH
RESULTS="$SCRATCH/results.jsonl"
: >"$RESULTS"

# --- the receiver --------------------------------------------------------------------------------
RPORT="$(free_port)"
RECV_URL="http://127.0.0.1:$RPORT"
python3 "$BENCH_DIR/webhook_load.py" receiver "$RPORT" >"$SCRATCH/receiver.log" 2>&1 &
RECV_PID=$!
_PIDS+=("$RECV_PID")
for _ in $(seq 100); do curl -sf "$RECV_URL/_stats" >/dev/null && break; sleep 0.05; done
curl -sf "$RECV_URL/_stats" >/dev/null || die "the receiver did not start"
log "receiver on $RECV_URL (pid $RECV_PID)"

CEILING='{}'
if command -v wrk >/dev/null; then
    cat >"$SCRATCH/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["webhook-id"] = "evt_01JX0000000000000000000000"
wrk.body = '{"id":"evt_01JX0000000000000000000000","object":"event","event":"organization.created","sequence":12,"environment_id":"env_01JX0000000000000000000000","organization_id":"org_01JX0000000000000000000000","data":{"id":"org_01JX0000000000000000000000","object":"organization","name":"r1 org 1","domains":[],"created_at":"2026-11-28T17:00:00Z"},"created_at":"2026-11-28T17:00:00.000Z"}'
EOF
    c4="$(wrk -t1 -c4 -d4s -s "$SCRATCH/post.lua" "$RECV_URL/in/x" | awk '/Requests\/sec/ {print $2}')"
    c16="$(wrk -t1 -c16 -d4s -s "$SCRATCH/post.lua" "$RECV_URL/in/x" | awk '/Requests\/sec/ {print $2}')"
    CEILING="{\"tool\":\"wrk -t1 -d4s\",\"c4_per_s\":$c4,\"c16_per_s\":$c16}"
    log "receiver ceiling (wrk, one thread): $c4/s at 4 connections, $c16/s at 16"
    curl -sf "$RECV_URL/_reset" >/dev/null
fi

# --- per configuration ---------------------------------------------------------------------------

# setup_env ENV ENDPOINTS — environment, egress rule for the receiver, endpoints /in/0…
setup_env() {
    local env="$1" k="$2" v i out
    api POST /admin/v1/environments "{\"slug\":\"$env\"}" >/dev/null \
        || die "creating environment $env: HTTP $(api_status)"
    v="$(api GET "/admin/v1/environments/$env/egress-policy" | json_get '.get("version", 0)')"
    out="$(api PUT "/admin/v1/environments/$env/egress-policy" \
        "{\"version\":$v,\"rules\":[{\"id\":\"recv\",\"scheme\":\"http\",\"cidr\":\"127.0.0.0/8\",\"port\":$RPORT,\"purposes\":[\"webhook\"]}]}")" \
        || die "egress policy on $env: HTTP $(api_status): $out"
    for i in $(seq 0 $((k - 1))); do
        out="$(api POST "/admin/v1/environments/$env/webhook-endpoints" "{\"url\":\"$RECV_URL/in/$i\"}")" \
            || die "webhook endpoint on $env: HTTP $(api_status): $out"
    done
    sleep 1 # the webhook_endpoint.created deliveries of the earlier endpoints arrive now
}

# start_configured BACKEND LABEL PER_ENDPOINT MAX_IN_FLIGHT POLL_MS — a fresh server
start_configured() {
    local backend="$1" label="$2" dir port db=()
    mk_tmp dir
    port="$(free_port)"
    if [ "$backend" = postgres ]; then
        local name="wh_${label//-/_}"
        pg_createdb "$PG_PORT" "$name"
        db=(--database-url "postgres://postgres@127.0.0.1:$PG_PORT/$name")
    fi
    DB_ARGS=("${db[@]}")
    DATA="$dir/data"
    with_dispatcher_env "$3" "$4" "$5" start_server "$DATA" "$port" --demo "${DB_ARGS[@]}"
    ADMIN_KEY="$(admin_key "$DATA")"
}

# restart_configured PER_ENDPOINT MAX_IN_FLIGHT POLL_MS — the same data, a new server process
restart_configured() {
    with_dispatcher_env "$1" "$2" "$3" start_server "$DATA" "$(free_port)" --demo "${DB_ARGS[@]}"
}

# with_dispatcher_env PER_ENDPOINT MAX_IN_FLIGHT POLL_MS COMMAND… — runs COMMAND in this shell
# (start_server registers its PID here) with the dispatcher settings exported for the server.
with_dispatcher_env() {
    export PORTCULLIS_WEBHOOK_PER_ENDPOINT_IN_FLIGHT="$1" PORTCULLIS_WEBHOOK_MAX_IN_FLIGHT="$2" \
        PORTCULLIS_WEBHOOK_POLL_INTERVAL_MS="$3"
    [ -z "${PORTCULLIS_WEBHOOK_DISPATCHER:-}" ] || export PORTCULLIS_WEBHOOK_DISPATCHER
    shift 3
    "$@"
    unset PORTCULLIS_WEBHOOK_PER_ENDPOINT_IN_FLIGHT PORTCULLIS_WEBHOOK_MAX_IN_FLIGHT \
        PORTCULLIS_WEBHOOK_POLL_INTERVAL_MS PORTCULLIS_WEBHOOK_DISPATCHER
}

# The server's webhook metrics (attempt count and mean duration of the HTTP send).
attempt_metrics() {
    curl -s "$SERVER_URL/metrics" | python3 -c '
import json, re, sys
t = sys.stdin.read()
def v(name):
    return sum(float(m) for m in re.findall(r"^" + name + r"(?:\{[^}]*\})? ([0-9.e+-]+)$", t, re.M))
s, c = v("portcullis_webhook_attempt_duration_seconds_sum"), v("portcullis_webhook_attempt_duration_seconds_count")
ok = sum(float(m) for m in re.findall(r"^portcullis_webhook_attempts_total\{outcome=\"succeeded\"\} ([0-9.e+-]+)$", t, re.M))
bad = sum(float(m) for m in re.findall(r"^portcullis_webhook_attempts_total\{outcome=\"failed\"\} ([0-9.e+-]+)$", t, re.M))
print(json.dumps({"attempts_succeeded": ok, "attempts_failed": bad, "attempt_mean_ms": round(s / c * 1000, 3) if c else None}))'
}

run_backend() {
    local backend="$1" cfg label k pe mif poll mode env out m rate
    for cfg in $CONFIGS; do
        IFS=: read -r label k pe mif poll mode <<<"$cfg"
        mode="${mode:-max}"
        log "$backend / $label: $k endpoint(s), per-endpoint in flight $pe, max in flight $mif, poll $poll ms, writes: $mode"
        env="wh-$label"
        if [ "$mode" = drain ]; then
            # The backlog is written with the dispatcher off, then a fresh process delivers it.
            PORTCULLIS_WEBHOOK_DISPATCHER=false start_configured "$backend" "$label" "$pe" "$mif" "$poll"
            setup_env "$env" "$k"
            out="$(python3 "$BENCH_DIR/admin_load.py" "$SERVER_URL" "$ADMIN_KEY" "$env" "$N" "$CONCURRENCY" d)" \
                || die "writing the backlog failed: $out"
            log "  backlog written: $out"
            stop_server
            python3 "$BENCH_DIR/webhook_load.py" reset "$RECV_URL"
            restart_configured "$pe" "$mif" "$poll"
            out="$(python3 "$BENCH_DIR/webhook_load.py" drain "$RECV_URL" $((N * k)) "$DRAIN_S" "$SERVER_PID")" \
                || log "  warning: the backlog did not drain within ${DRAIN_S}s"
            log "  $out"
        else
            rate=0
            [ "$mode" = max ] || rate="${mode#rate=}"
            start_configured "$backend" "$label" "$pe" "$mif" "$poll"
            setup_env "$env" "$k"
            out="$(python3 "$BENCH_DIR/webhook_load.py" throughput "$SERVER_URL" "$ADMIN_KEY" "$env" "$WARMUP" \
                "$CONCURRENCY" warm "$RECV_URL" "$k" 60 "$SERVER_PID")" || die "warm-up failed: $out"
            out="$(python3 "$BENCH_DIR/webhook_load.py" throughput "$SERVER_URL" "$ADMIN_KEY" "$env" "$N" \
                "$CONCURRENCY" run "$RECV_URL" "$k" "$DRAIN_S" "$SERVER_PID" "$rate")" \
                || log "  warning: the run had write errors or did not drain within ${DRAIN_S}s"
            echo "$out" | python3 "$BENCH_DIR/webhook_load.py" summary >&2
        fi
        m="$(attempt_metrics)"
        log "  server metrics: $m"
        echo "{\"backend\":\"$backend\",\"kind\":\"$([ "$mode" = drain ] && echo drain || echo throughput)\",\"label\":\"$label\",\"mode\":\"$mode\",\"endpoints\":$k,\"per_endpoint_in_flight\":$pe,\"max_in_flight\":$mif,\"poll_ms\":$poll,\"metrics\":$m,\"result\":$out}" >>"$RESULTS"
        stop_server
    done
    for cfg in $IDLE_CONFIGS; do
        IFS=: read -r label k pe mif poll <<<"$cfg"
        log "$backend / $label: $IDLE_SAMPLES single events, poll $poll ms"
        start_configured "$backend" "$label" "$pe" "$mif" "$poll"
        env="wh-$label"
        setup_env "$env" 1
        out="$(python3 "$BENCH_DIR/webhook_load.py" idle "$SERVER_URL" "$ADMIN_KEY" "$env" "$IDLE_SAMPLES" \
            "$RECV_URL" 0.1 0.6)" || log "  warning: some deliveries did not arrive: $out"
        log "  $out"
        echo "{\"backend\":\"$backend\",\"kind\":\"idle\",\"label\":\"$label\",\"endpoints\":$k,\"per_endpoint_in_flight\":$pe,\"max_in_flight\":$mif,\"poll_ms\":$poll,\"result\":$out}" >>"$RESULTS"
        stop_server
    done
}

PG_VERSION=""
for backend in $BACKENDS; do
    case "$backend" in
    sqlite) run_backend sqlite ;;
    postgres)
        pg_start
        PG_VERSION="$(as_pg psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'SHOW server_version')"
        run_backend postgres
        ;;
    *) die "unknown backend $backend" ;;
    esac
done

python3 - "$RESULTS" "$OUT_DIR/webhooks.json" "$PG_VERSION" <<EOF
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = {"conditions": """$COND""", "n": $N, "concurrency": $CONCURRENCY, "warmup": $WARMUP,
       "idle_samples": $IDLE_SAMPLES, "postgres_version": sys.argv[3] or None,
       "receiver_ceiling": $CEILING, "target_deliveries_per_s": 2000, "runs": rows}
json.dump(out, open(sys.argv[2], "w"), indent=1)
# The console summary leaves out the per-second timelines.
for r in rows:
    r["result"].pop("deliveries_per_second_timeline", None)
print(json.dumps(out, indent=1))
EOF
