# Shared helpers for the benchmark scripts in bench/. Source it; do not run it.
#
# Everything here stays on loopback (127.0.0.1), every server or PostgreSQL cluster a script starts
# is registered for cleanup, and `bench_cleanup` (installed as an EXIT trap by `bench_init`) stops
# them all and removes their temporary directories.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BIN="${PORTCULLIS_BIN:-$ROOT/target/release/portcullis}"
# The server refuses unknown PORTCULLIS_* variables: the choice of binary stays with the scripts.
export -n PORTCULLIS_BIN 2>/dev/null || true
# Scratch space on the same disk as a real data directory would be (not tmpfs), so SQLite and
# PostgreSQL pay for real fsyncs. Override with BENCH_TMP.
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
# Raw results of this run (one file per benchmark, read by run-all.sh).
OUT_DIR="${BENCH_OUT:-$ROOT/target/bench}"
mkdir -p "$OUT_DIR"

_PIDS=()
_DIRS=()
_PG_CLUSTERS=()
_API_STATUS_FILE="$OUT_DIR/.api-status.$$"
# KVM guests with the haltpoll cpuidle driver: how long an idle vCPU polls before it halts.
_HALT_POLL_FILE=/sys/module/haltpoll/parameters/guest_halt_poll_ns
_HALT_POLL_SAVED=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

bench_cleanup() {
    local pid dir c
    # A second Ctrl-C must not cut the cleanup short; the machine setting goes back first.
    trap '' INT TERM
    if [ -n "$_HALT_POLL_SAVED" ]; then echo "$_HALT_POLL_SAVED" >"$_HALT_POLL_FILE" || true; fi
    for pid in "${_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for c in "${_PG_CLUSTERS[@]:-}"; do
        [ -n "$c" ] || continue
        pg_stop "$c" || true
    done
    rm -f -- "$_API_STATUS_FILE"
    for dir in "${_DIRS[@]:-}"; do
        [ -n "$dir" ] && rm -rf -- "$dir"
    done
}

bench_init() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# set_halt_poll NS — on a KVM guest whose cpuidle driver is haltpoll, let an idle vCPU poll for NS
# nanoseconds before it halts; the previous value is restored on exit. Linux's default is 200000;
# some hosts boot their guests with haltpoll.guest_halt_poll_ns=0, and then every wake-up of a
# thread on an idle vCPU (the load generator, between responses) is a round trip through the
# host that the waking process — the server, writing a response — pays for.
set_halt_poll() {
    [[ "$1" =~ ^[0-9]+$ ]] || die "HALT_POLL_NS is a number of nanoseconds, not '$1'"
    [ -w "$_HALT_POLL_FILE" ] \
        || die "HALT_POLL_NS needs a writable $_HALT_POLL_FILE (a KVM guest with the haltpoll cpuidle driver, as root)"
    _HALT_POLL_SAVED="$(cat "$_HALT_POLL_FILE")"
    echo "$1" >"$_HALT_POLL_FILE"
}

# Builds the release binary unless it is newer than every source file (SKIP_BUILD=1 skips).
build_release() {
    if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$BIN" ]; then return; fi
    if [ -x "$BIN" ] && [ -z "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$BIN" -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.lock' -o -name '*.sql' -o -name '*.html' \) -print -quit)" ]; then
        return
    fi
    log "building the release binary (cargo build --release -p portcullis-cli)"
    (cd "$ROOT" && cargo build --release -p portcullis-cli >&2)
}

# mk_tmp VAR — a new scratch directory, removed on exit, named in $VAR. (Not `$(…)`: cleanup
# registration must happen in this shell, not in a subshell.)
mk_tmp() {
    local d
    d="$(mktemp -d "$BENCH_TMP/portcullis-bench.XXXXXX")"
    _DIRS+=("$d")
    printf -v "$1" '%s' "$d"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready URL [timeout_s]
wait_ready() {
    local url="$1" t="${2:-60}" i
    for i in $(seq $((t * 20))); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz" 2>/dev/null)" = 200 ]; then return 0; fi
        sleep 0.05
    done
    return 1
}

# start_server DATA_DIR PORT [extra serve flags...]; sets SERVER_PID and SERVER_URL.
start_server() {
    local data="$1" port="$2"
    shift 2
    SERVER_URL="http://127.0.0.1:$port"
    "$BIN" serve --data-dir "$data" --listen "127.0.0.1:$port" --public-url "$SERVER_URL" "$@" \
        >"$data.stdout" 2>"$data.stderr" &
    SERVER_PID=$!
    _PIDS+=("$SERVER_PID")
    if ! wait_ready "$SERVER_URL" 60; then
        tail -20 "$data.stderr" >&2 || true
        die "the server on $SERVER_URL did not become ready"
    fi
}

stop_server() {
    local pid="${1:-$SERVER_PID}"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

admin_key() { tr -d '\n' <"$1/admin.key"; }

# api METHOD PATH [JSON] — admin API call against $SERVER_URL with $ADMIN_KEY; prints the body,
# fails on a non-2xx answer.
api() {
    local method="$1" path="$2" body="${3:-}"
    local args=(-sS -X "$method" -H "Authorization: Bearer $ADMIN_KEY" -w '\n%{http_code}')
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
    local out code
    out="$(curl "${args[@]}" "$SERVER_URL$path")"
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    # Runs in `$(…)` as a rule, so the status goes through a file; read it with api_status.
    printf '%s' "$code" >"$_API_STATUS_FILE"
    printf '%s' "$out"
    [ "${code:0:1}" = 2 ]
}
api_status() { cat "$_API_STATUS_FILE" 2>/dev/null; }

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

# --- PostgreSQL: a throwaway cluster, as crates/testkit/src/pg.rs does it ----------------------

pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$d" ] && [ -x "$d/initdb" ] || d="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
    [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    echo "$d"
}

# Runs a PostgreSQL server binary as the cluster owner: initdb refuses to run as root, so as root
# everything runs as Debian's `postgres` user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# pg_start → sets PG_DIR and PG_PORT; the cluster has the server's default durability settings
# (fsync on, synchronous_commit on) and lives under $BENCH_TMP (disk, not tmpfs).
pg_start() {
    local bin dir port
    bin="$(pg_bin)"
    dir="$(mktemp -d "$BENCH_TMP/portcullis-bench-pg.XXXXXX")"
    _PG_CLUSTERS+=("$dir")
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        --no-instructions >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    port="$(free_port)"
    cat >>"$dir/data/postgresql.conf" <<EOF
# portcullis bench
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 100
EOF
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null \
        || { cat "$dir/server.log" >&2; die "pg_ctl start failed"; }
    PG_DIR="$dir"
    PG_PORT="$port"
}

pg_stop() {
    local dir="$1"
    [ -d "$dir/data" ] || return 0
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf -- "$dir"
}

# pg_createdb PORT NAME [SQL to run in it]
pg_createdb() {
    local port="$1" name="$2" sql="${3:-}"
    as_pg "$(pg_bin)/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name"
    [ -z "$sql" ] || as_pg psql -q -h 127.0.0.1 -p "$port" -U postgres -d "$name" -c "$sql" >/dev/null
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

conditions() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' plus uncommitted changes in crates/')"
    echo "cpu: $(awk -F: '/model name/ {gsub(/^ /,"",$2); print $2; exit}' /proc/cpuinfo); kernel: $(uname -r)"
    echo "idle: cpuidle driver $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none), guest_halt_poll_ns $(cat "$_HALT_POLL_FILE" 2>/dev/null || echo n/a)"
}
