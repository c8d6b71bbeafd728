#!/usr/bin/env bash
# Plan and apply time for a declarative configuration with N organizations, each with one
# connection (issue 7's benchmark), as a signed bundle and as a plain file.
#
#   bench/config_apply.sh                     # N=1000 OIDC connections, SQLite then PostgreSQL
#   N=1000 KIND=saml bench/config_apply.sh    # SAML connections (each makes two RSA-2048 SP keys)
#   BACKENDS=sqlite bench/config_apply.sh
#
# Needs python3, curl and cargo (and the PostgreSQL server binaries for the postgres run).
#
# For each backend: a release server on a fresh data directory (SQLite) or a throwaway cluster
# (PostgreSQL); an environment; a publisher key trusted by it. The file is generated here
# (bench/config_gen.py): N organizations with a domain each and one connection (OIDC with pinned
# keys and a client secret, or SAML with a manual IdP certificate). Then, timed with the CLI as an
# operator runs it (wall clock, including the process start):
#   1. `bundle create` (offline signing), 2. `bundle verify --env` (all checks + the plan against
#   the empty environment), 3. `bundle apply` (verify + plan + one transaction),
#   4. `plan` of the same file again (N organizations to compare, no change),
#   5. `export-config` of the populated environment.
# Prints a JSON summary and writes target/bench/config_apply.json.

source "$(dirname "$0")/lib.sh"
bench_init

N="${N:-1000}"
KIND="${KIND:-oidc}"
BACKENDS="${BACKENDS:-sqlite postgres}"
for tool in python3 curl; do command -v "$tool" >/dev/null || die "$tool is missing"; done

build_release
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"
mk_tmp SCRATCH

python3 "$ROOT/bench/config_gen.py" "$N" "$KIND" >"$SCRATCH/config.toml" || die "config_gen failed"
log "config: $N organizations with one $KIND connection each, $(wc -c <"$SCRATCH/config.toml") bytes"
"$BIN" bundle keygen --out "$SCRATCH/publisher.key" >/dev/null || die "keygen failed"

now_ms() { date +%s%3N; }
# timed NAME CMD... — runs CMD, records its wall time in ms under NAME.
timed() {
    local name="$1" t0 t1
    shift
    t0="$(now_ms)"
    "$@" >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" || { cat "$SCRATCH/$name.err" >&2; die "$name failed"; }
    t1="$(now_ms)"
    TIMES+=("\"$name\": $((t1 - t0))")
    log "$name: $((t1 - t0)) ms"
}

RESULTS=()
for backend in $BACKENDS; do
    TIMES=()
    mk_tmp DATA
    PORT="$(free_port)"
    if [ "$backend" = postgres ]; then
        pg_start
        pg_createdb "$PG_PORT" bench
        start_server "$DATA/data" "$PORT" --database-url "postgres://postgres@127.0.0.1:$PG_PORT/bench"
    else
        start_server "$DATA/data" "$PORT"
    fi
    export PORTCULLIS_URL="$SERVER_URL" PORTCULLIS_ADMIN_KEY
    PORTCULLIS_ADMIN_KEY="$(admin_key "$DATA/data")"
    ENV_ID="$("$BIN" env create bench --mode isolated --json | json_get '["id"]')"
    "$BIN" bundle trust add --env bench "$SCRATCH/publisher.pub.json" >/dev/null || die "trust failed"
    rm -f "$SCRATCH/config.bundle"
    timed bundle_create "$BIN" bundle create --env "$ENV_ID" --config "$SCRATCH/config.toml" \
        --sign-key "$SCRATCH/publisher.key" --sequence 1 --out "$SCRATCH/config.bundle"
    timed bundle_verify_and_plan "$BIN" bundle verify "$SCRATCH/config.bundle" --env bench
    timed bundle_apply "$BIN" bundle apply "$SCRATCH/config.bundle" --env bench
    grep -q "Plan: $((2 * N)) to create" "$SCRATCH/bundle_apply.out" || die "the plan did not create $N organizations and connections"
    timed plan_unchanged "$BIN" plan --env bench "$SCRATCH/config.toml"
    grep -q "No changes" "$SCRATCH/plan_unchanged.out" || die "the second plan is not empty"
    timed export_config "$BIN" export-config --env bench --out "$SCRATCH/exported.toml"
    RESULTS+=("{\"backend\": \"$backend\", \"n\": $N, \"kind\": \"$KIND\", $(IFS=,; echo "${TIMES[*]}")}")
    stop_server
    [ "$backend" = postgres ] && pg_stop "$PG_DIR"
done

mkdir -p "$ROOT/target/bench"
printf '{"conditions": %s, "runs": [%s]}\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))' <<<"$COND")" \
    "$(IFS=,; echo "${RESULTS[*]}")" | tee "$ROOT/target/bench/config_apply.json"
