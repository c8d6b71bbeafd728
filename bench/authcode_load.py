#!/usr/bin/env python3
"""Full authorization-code round trips per second against the demo environment.

usage: authcode_load.py URL DEMO_TXT FLOWS CONCURRENCY [MAX_SECONDS]

Reads the demo app's client ID, redirect URI, user and password from the server's demo.txt
(written by `portcullis serve --demo`). Each of CONCURRENCY threads keeps one keep-alive
HTTP/1.1 connection (http.client) and repeats, until FLOWS flows were started or MAX_SECONDS
(default 15) passed, the whole browser flow with a fresh cookie jar — no session is ever reused,
so every flow is a full password sign-in (Argon2id):

  1. GET  /e/demo/oauth2/authorize?…PKCE S256…   → 303 to /e/demo/login?req=ID, Set-Cookie pc_flow
  2. GET  /e/demo/login?req=ID                    → 200 email form
  3. POST /e/demo/login            req, email     → 200 password form
  4. POST /e/demo/login/password   req, email, password (with pc_flow) → 303 to redirect_uri?code=…
  5. POST /e/demo/oauth2/token     authorization_code + code_verifier  → 200 with access and ID token

Prints one JSON object: completed flows/s, flow latency p50/p99 and the median of each step.
A flow with any unexpected answer counts as an error.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs, quote, urlencode, urlsplit

STEPS = ["authorize", "login_page", "email", "password", "token"]


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[i]


def demo_settings(path):
    text = open(path, encoding="utf-8").read()
    cid = re.search(r"client_id=([^&\s]+)", text).group(1)
    redirect = re.search(r"redirect_uri=([^&\s]+)", text).group(1)
    password = re.search(r"with password (\S+)", text).group(1)
    email = re.search(r"as (\S+@\S+) with password", text).group(1)
    from urllib.parse import unquote
    return cid, unquote(redirect), email, password


def main() -> int:
    url, demo_txt, flows, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    max_s = float(sys.argv[5]) if len(sys.argv) > 5 else 15.0
    cid, redirect, email, password = demo_settings(demo_txt)
    u = urlsplit(url)
    base = "/e/demo"
    lock = threading.Lock()
    started = [0]
    done_lat, errors, step_lat = [], [0], {s: [] for s in STEPS}
    first_error = []
    t0 = time.perf_counter()

    def one_flow(conn):
        steps = {}

        def call(name, method, path, body=None, headers=None):
            t = time.perf_counter()
            h = dict(headers or {})
            if body is not None:
                h["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            steps[name] = (time.perf_counter() - t) * 1000
            return r, data

        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = base64.urlsafe_b64encode(os.urandom(9)).decode()
        q = urlencode({
            "response_type": "code", "client_id": cid, "redirect_uri": redirect,
            "scope": "openid email profile", "state": state,
            "code_challenge": challenge, "code_challenge_method": "S256",
        }, quote_via=quote)
        r, _ = call("authorize", "GET", f"{base}/oauth2/authorize?{q}")
        if r.status != 303:
            raise RuntimeError(f"authorize answered {r.status}")
        loc = urlsplit(r.getheader("Location"))
        req_id = parse_qs(loc.query)["req"][0]
        flow_cookie = None
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("pc_flow="):
                flow_cookie = v.split(";", 1)[0]
        if not flow_cookie:
            raise RuntimeError("authorize set no pc_flow cookie")
        ck = {"Cookie": flow_cookie}
        r, _ = call("login_page", "GET", f"{loc.path}?{loc.query}", headers=ck)
        if r.status != 200:
            raise RuntimeError(f"login page answered {r.status}")
        r, _ = call("email", "POST", f"{base}/login", body=urlencode({"req": req_id, "email": email}), headers=ck)
        if r.status != 200:
            raise RuntimeError(f"email step answered {r.status}")
        r, _ = call("password", "POST", f"{base}/login/password",
                    body=urlencode({"req": req_id, "email": email, "password": password}), headers=ck)
        if r.status != 303:
            raise RuntimeError(f"password step answered {r.status}")
        back = parse_qs(urlsplit(r.getheader("Location")).query)
        if back.get("state", [None])[0] != state:
            raise RuntimeError("state not echoed")
        code = back["code"][0]
        r, data = call("token", "POST", f"{base}/oauth2/token", body=urlencode({
            "grant_type": "authorization_code", "client_id": cid, "redirect_uri": redirect,
            "code_verifier": verifier, "code": code,
        }))
        if r.status != 200:
            raise RuntimeError(f"token answered {r.status}: {data[:200]!r}")
        tok = json.loads(data)
        if "access_token" not in tok or "id_token" not in tok:
            raise RuntimeError("token answer lacks access_token or id_token")
        return steps

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while True:
            with lock:
                if started[0] >= flows or time.perf_counter() - t0 > max_s:
                    break
                started[0] += 1
            t = time.perf_counter()
            try:
                steps = one_flow(conn)
            except Exception as e:  # noqa: BLE001 — any failure is counted and reported
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                with lock:
                    errors[0] += 1
                    if not first_error:
                        first_error.append(repr(e))
                continue
            ms = (time.perf_counter() - t) * 1000
            with lock:
                done_lat.append(ms)
                for k, v in steps.items():
                    step_lat[k].append(v)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(json.dumps({
        "flows": len(done_lat),
        "concurrency": conc,
        "errors": errors[0],
        "first_error": first_error[0] if first_error else None,
        "seconds": round(wall, 3),
        "per_second": round(len(done_lat) / wall, 2),
        "p50_ms": round(pct(done_lat, 50), 1),
        "p99_ms": round(pct(done_lat, 99), 1),
        "step_median_ms": {k: round(pct(v, 50), 2) for k, v in step_lat.items()},
    }))
    return 0 if errors[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
