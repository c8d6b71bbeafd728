#!/usr/bin/env python3
"""Writes bench/RESULTS.md from the JSON summaries in target/bench/ (startup.json,
admin_throughput.json, token.json). Text between `<!-- notes -->` and `<!-- /notes -->` in an
existing RESULTS.md is kept, so observations written by hand survive a rerun.

usage: report.py OUT_DIR RESULTS_MD
"""

import json
import os
import re
import sys

out_dir, results = sys.argv[1], sys.argv[2]


def load(name):
    p = os.path.join(out_dir, name)
    return json.load(open(p)) if os.path.exists(p) else None


def met(ok):
    return "**met**" if ok else "**not met**"


def fmt(x, nd=1):
    return f"{x:,.{nd}f}"


notes = "_(none yet)_\n"
if os.path.exists(results):
    m = re.search(r"<!-- notes -->\n(.*?)<!-- /notes -->", open(results).read(), re.S)
    if m:
        notes = m.group(1)

L = []
w = L.append
w("# Benchmark results\n")
w("Produced by `bench/run-all.sh` (which runs `bench/startup.sh`, `bench/admin_throughput.sh` and "
  "`bench/token.sh`, then `bench/report.py`). Figures are medians of several runs; the raw runs are in "
  "the JSON files the scripts write to `target/bench/`. Everything runs on loopback on one machine: the "
  "load generators share the CPU with the server.\n")
w("Rerun everything:\n\n```sh\nbench/run-all.sh          # builds the release binary if needed; about 6–8 minutes, plus the release build when sources changed\n```\n")
w("or one part: `bench/startup.sh`, `bench/admin_throughput.sh`, `bench/token.sh` "
  "(each prints a JSON summary; `SKIP_BUILD=1` uses `target/release/portcullis` as it is).\n")

s = load("startup.json")
if s:
    w("## Start-up, memory, binary size (issue 2)\n")
    w("Conditions: " + s["conditions"].replace("\n", "; ") + ". Other builds and tests may have been running "
      "on the same 2 cores at the time.\n")
    r = s["readyz_ms"]
    w(f"Command: `bench/startup.sh` (RUNS={s['runs']}). Start-up is the time from fork/exec of "
      "`portcullis serve` (SQLite) to the first `200` from `GET /readyz`, polled about every millisecond.\n")
    w("| Measure | Value (median) | Target | Result |")
    w("|---|---|---|---|")
    w(f"| Start to `/readyz` 200, existing data directory | {fmt(r['existing']['median'])} ms | < 150 ms | {met(r['existing']['median'] < 150)} |")
    w(f"| Start to `/readyz` 200, fresh data directory (bootstrap) | {fmt(r['fresh']['median'])} ms | < 150 ms | {met(r['fresh']['median'] < 150)} |")
    w(f"| Start to `/readyz` 200, fresh directory with `--demo` (informational) | {fmt(r['fresh_demo']['median'])} ms | — | — |")
    w(f"| Exec of `portcullis --version` (floor) | {fmt(r['exec_version']['median'])} ms | — | — |")
    m = s["rss_mib"]
    w(f"| Idle VmRSS, 1 s after ready (`--demo`, existing directory) | {fmt(m['idle'])} MiB | < 25 MB | {met(m['idle'] * 1.048576 < 25)} |")
    w(f"| Idle VmRSS, 1 s after 600 requests on 8 connections | {fmt(m['after_requests'])} MiB (VmHWM {fmt(m['hwm_after_requests'])} MiB) | < 25 MB | {met(m['after_requests'] * 1.048576 < 25)} |")
    tok = load("token.json")
    if tok and tok.get("server_rss_mib_after_wrk"):
        w(f"| VmRSS right after the 64-connection token load (informational) | {fmt(tok['server_rss_mib_after_wrk'])} MiB | — | — |")
    b = s["binary"]
    w(f"| Release binary `target/release/portcullis` (stripped) | {b['bytes']:,} bytes = {b['mib']} MiB | — | — |")
    w("")
    w("Individual runs (ms): " + "; ".join(f"{k}: {' '.join(v['runs'])}" for k, v in r.items()) + ".\n")

a = load("admin_throughput.json")
if a:
    w("## Admin API create throughput (issue 2)\n")
    w("Conditions: " + a["conditions"].replace("\n", "; ") + f"; PostgreSQL {a['postgres_version']}. "
      "Other builds may have been running.\n")
    w(f"Command: `bench/admin_throughput.sh` (N={a['n']} `POST /admin/v1/environments/{{env}}/organizations` per batch, "
      f"{a['concurrency']} concurrent keep-alive clients from `bench/admin_load.py`, {a['runs']} batches per backend, each in "
      "a fresh environment). Each create is one transaction with its event and audit record.\n")
    w("| Backend | Creates/s (median) | Batches | p50 / p99 latency | Errors |")
    w("|---|---|---|---|---|")
    names = {"sqlite": "SQLite (WAL, synchronous=NORMAL, on disk)",
             "postgres": "PostgreSQL, default durability (synchronous_commit=on)",
             "postgres-async": "PostgreSQL, synchronous_commit=off (like SQLite's NORMAL)"}
    for k, v in a["backends"].items():
        w(f"| {names.get(k, k)} | {fmt(v['creates_per_s_median'])} | {', '.join(fmt(x) for x in v['creates_per_s_runs'])} | "
          f"{fmt(v['p50_ms_median'], 2)} / {fmt(v['p99_ms_median'], 2)} ms | {v['errors']} |")
    w("\nIssue 2 sets no target for this figure.\n")

t = load("token.json")
if t:
    w("## Token endpoint (issue 3)\n")
    w("Conditions: " + t["conditions"].replace("\n", "; ") + f"; {t['wrk']}. Server on SQLite. "
      "Other builds may have been running; wrk shares the 2 cores with the server.\n")
    w(f"Command: `bench/token.sh` — per algorithm `wrk -t{t['wrk_threads']} -c{t['connections']} -d{t['duration_s']}s --latency "
      f"-s bench/token.lua …/oauth2/token` after a 2 s warm-up, {t['runs']} runs, medians shown. Raw signing rate: "
      "`bench/sign-rate` (aws-lc-rs 1.19.0, the server's library and calls, 420-byte signing input) for 3 s on one "
      "thread and 3 s on two, in the same script run; `openssl speed -seconds 3` as a cross-check (OpenSSL, not aws-lc).\n")
    w("### Client credentials at 64 connections\n")
    w("| Algorithm | Requests/s | p50 | p99 | Raw sign/s, 1 core (aws-lc-rs) | 2 × 1 core | Measured sign/s, 2 threads | openssl sign/s, 1 core | Requests/s ÷ (2 × 1 core) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for alg, c in t["client_credentials"].items():
        o = c.get("openssl_sign_single_core_per_s")
        w(f"| {alg} | {fmt(c['rps_median'], 0)} | {fmt(c['p50_ms_median'], 2)} ms | {fmt(c['p99_ms_median'], 2)} ms | "
          f"{fmt(c['sign_single_core_per_s'], 0)} | {fmt(2 * c['sign_single_core_per_s'], 0)} | {fmt(c['sign_two_threads_measured_per_s'], 0)} | "
          f"{fmt(o, 0) if o else '—'} | {c['share_of_2x_single_core'] * 100:.1f}% |")
    w("")
    es = t["client_credentials"]["ES256"]
    w("| Target (issue 3) | Value | Result |")
    w("|---|---|---|")
    w(f"| ES256 client credentials ≥ 40% of the raw two-core signing rate (2 × {fmt(es['sign_single_core_per_s'], 0)}/s) | "
      f"{es['share_of_2x_single_core'] * 100:.1f}% ({fmt(es['rps_median'], 0)} req/s) | {met(es['share_of_2x_single_core'] >= 0.4)} |")
    w(f"| ES256 p99 < 10 ms at 64 connections | {fmt(es['p99_ms_median'], 2)} ms (runs: {', '.join(fmt(x, 2) for x in es['p99_ms_runs'])}) | {met(es['p99_ms_median'] < 10)} |")
    w("")
    w("Requests/s per run: " + "; ".join(f"{alg}: {', '.join(fmt(x, 0) for x in c['rps_runs'])}" for alg, c in t["client_credentials"].items())
      + ". Errors (non-2xx): " + ", ".join(f"{alg} {c['errors']}" for alg, c in t["client_credentials"].items()) + ".\n")
    ref = t.get("reference")
    if ref:
        w("Reference endpoints under the same wrk settings (same server, same run), to read the figures above against:\n")
        w("| Endpoint | Requests/s | p50 | p99 | What it costs the server |")
        w("|---|---|---|---|---|")
        what = {"healthz": "HTTP, routing, metrics middleware only — the ceiling of this harness on this machine",
                "jwks": "the same plus one SQLite read (the environment row, not cached on this route)"}
        path = {"healthz": "`GET /healthz`", "jwks": "`GET /e/bench-es256/jwks.json`"}
        for k, v in ref.items():
            w(f"| {path[k]} | {fmt(v['rps_median'], 0)} | {fmt(v['p50_ms_median'], 2)} ms | {fmt(v['p99_ms_median'], 2)} ms | {what[k]} |")
        w("")
    ac = t["authorization_code"]
    w("### Authorization code round trip\n")
    w(f"`bench/authcode_load.py` (run by `bench/token.sh`): {ac['concurrency']} keep-alive connections, each repeating the whole "
      "browser flow with a fresh cookie jar (no session reuse): authorize → login page → email → password "
      "(Argon2id, the `argon2` crate's defaults: 19 MiB, 2 passes) → 303 with code → token with the PKCE verifier; "
      f"at most 400 flows or 15 s per run, {len(ac['flows_per_s_runs'])} runs.\n")
    w("| Measure | Value (median) |")
    w("|---|---|")
    w(f"| Full round trips/s | {fmt(ac['flows_per_s_median'], 1)} (runs: {', '.join(fmt(x, 1) for x in ac['flows_per_s_runs'])}) |")
    w(f"| Round trip latency p50 / p99 | {fmt(ac['flow_p50_ms_median'])} / {fmt(ac['flow_p99_ms_median'])} ms |")
    w("| Median per step | " + ", ".join(f"{k} {fmt(v, 2)} ms" for k, v in ac["step_median_ms"].items()) + " |")
    w(f"| Errors | {ac['errors']} |")
    w("\nIssue 3 sets no target for this figure; the password step (Argon2id on a 2-permit pool) bounds it.\n")

w("## Observations\n")
w("<!-- notes -->\n" + notes + "<!-- /notes -->\n")
open(results, "w").write("\n".join(L))
print(f"wrote {results}")
