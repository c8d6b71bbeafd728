#!/usr/bin/env bash
# Runs every benchmark in bench/ once and writes bench/RESULTS.md from their JSON summaries.
#
#   bench/run-all.sh      # about 6–8 minutes on 2 cores once the release binary is built
#
# Needs: cargo, python3, curl, wrk (`apt-get install -y wrk`; bench/token.sh installs it as
# root when missing), PostgreSQL's server binaries (`apt-get install postgresql`). Every load is
# bounded (fixed counts, wrk runs ≤ 15 s), on 127.0.0.1 only, and each script stops what it
# started. Variables understood by the scripts (RUNS, N, CONCURRENCY, DURATION, CONNECTIONS,
# WRK_THREADS, SKIP_BUILD, BENCH_TMP) are passed through.

set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_OUT="${BENCH_OUT:-$PWD/target/bench}"
mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/{startup,admin_throughput,token}.json

bench/startup.sh
export SKIP_BUILD=1 # built (or found up to date) by startup.sh
bench/admin_throughput.sh
bench/token.sh
python3 bench/report.py "$BENCH_OUT" bench/RESULTS.md
