#!/usr/bin/env bash
# Admin-API create throughput (organizations/s) on SQLite and on PostgreSQL (issue 2's benchmark).
#
#   bench/admin_throughput.sh   # N=2000 creates, CONCURRENCY=8 clients, RUNS=3 batches per backend
#
# Needs: python3, curl, and PostgreSQL's server binaries (Debian `postgresql`; found under
# /usr/lib/postgresql/*/bin). As root, the throwaway cluster runs as the `postgres` user, like
# crates/testkit/src/pg.rs does. Everything listens on 127.0.0.1 only; the server and the cluster
# are stopped on exit.
#
# Each batch: bench/admin_load.py sends N `POST /admin/v1/environments/{env}/organizations` (one
# domain each) from CONCURRENCY threads, each on one keep-alive connection; a batch runs in a
# fresh environment. Reported: the median over RUNS batches of creates/s (wall time of the whole
# batch), with p50/p99 latency. Every create is one transaction that also writes the
# `organization.created` event and an audit record (hash chain).
#
# Backends:
#   sqlite       the embedded default (data directory under $BENCH_TMP, on disk; WAL,
#                synchronous=NORMAL as the server sets it — no fsync per commit)
#   postgres     a fresh cluster under $BENCH_TMP with PostgreSQL's defaults (fsync on,
#                synchronous_commit on — one WAL flush per commit)
#   postgres-async  the same cluster, a database with synchronous_commit=off — the durability
#                trade-off closest to SQLite's WAL+NORMAL, shown for a like-for-like comparison
# Prints a JSON summary and writes target/bench/admin_throughput.json.

source "$(dirname "$0")/lib.sh"
bench_init

N="${N:-2000}"
CONCURRENCY="${CONCURRENCY:-8}"
RUNS="${RUNS:-3}"
build_release
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"

mk_tmp SCRATCH
RESULTS="$SCRATCH/results.jsonl"

run_backend() { # NAME [serve flags...]
    local name="$1"
    shift
    local dir port i out
    mk_tmp dir
    port="$(free_port)"
    start_server "$dir/data" "$port" "$@"
    ADMIN_KEY="$(admin_key "$dir/data")"
    for i in $(seq "$RUNS"); do
        local env="bench-$name-$i"
        api POST /admin/v1/environments "{\"slug\":\"$env\"}" >/dev/null \
            || die "creating environment $env: HTTP $(api_status)"
        out="$(python3 "$BENCH_DIR/admin_load.py" "$SERVER_URL" "$ADMIN_KEY" "$env" "$N" "$CONCURRENCY" "r$i")" \
            || die "admin load on $name had errors: $out"
        log "  $name batch $i: $out"
        echo "{\"backend\":\"$name\",\"batch\":$i,\"result\":$out}" >>"$RESULTS"
    done
    stop_server
}

log "SQLite"
run_backend sqlite

log "PostgreSQL (throwaway cluster)"
pg_start
PGPORT="$PG_PORT"
pg_createdb "$PGPORT" portcullis
pg_createdb "$PGPORT" portcullis_async
as_pg psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres \
    -c "ALTER DATABASE portcullis_async SET synchronous_commit = off" >/dev/null
PG_VERSION="$(as_pg psql -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c 'SHOW server_version')"
run_backend postgres --database-url "postgres://postgres@127.0.0.1:$PGPORT/portcullis"
run_backend postgres-async --database-url "postgres://postgres@127.0.0.1:$PGPORT/portcullis_async"

python3 - "$RESULTS" "$OUT_DIR/admin_throughput.json" "$PG_VERSION" <<EOF
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = {"conditions": """$COND""", "n": $N, "concurrency": $CONCURRENCY, "runs": $RUNS,
       "postgres_version": sys.argv[3], "backends": {}}
for b in ["sqlite", "postgres", "postgres-async"]:
    rs = [r["result"] for r in rows if r["backend"] == b]
    out["backends"][b] = {
        "creates_per_s_median": statistics.median(r["per_second"] for r in rs),
        "creates_per_s_runs": [r["per_second"] for r in rs],
        "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in rs),
        "errors": sum(r["errors"] for r in rs),
    }
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out, indent=1))
EOF
