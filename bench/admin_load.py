#!/usr/bin/env python3
"""Admin-API create throughput: N organization creates from C concurrent keep-alive clients.

usage: admin_load.py URL ADMIN_KEY ENV N CONCURRENCY PREFIX

Each of CONCURRENCY threads holds one keep-alive HTTP/1.1 connection (http.client) and takes the
next index from a shared counter until N creates were sent; create i posts
{"name": "PREFIX org i", "domains": ["i.PREFIX.bench.test"]} (a domain belongs to one organization,
so PREFIX must differ between runs on the same environment). Prints one JSON object: creates/s over
the wall time of the whole batch, latency percentiles and the error count (any non-201 answer).
"""

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    i = min(len(sorted_ms) - 1, max(0, int(round(p / 100 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[i]


def main() -> int:
    url, key, env, n, conc, prefix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    u = urlsplit(url)
    path = f"/admin/v1/environments/{env}/organizations"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lock = threading.Lock()
    counter = iter(range(n))
    lat, errors, statuses = [], [0], {}

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({"name": f"{prefix} org {i}", "domains": [f"d{i}.{prefix}.bench.test"]})
            t = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                status = 0
            mine.append((time.perf_counter() - t) * 1000)
            if status != 201:
                with lock:
                    errors[0] += 1
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({
        "n": n,
        "concurrency": conc,
        "errors": errors[0],
        "error_statuses": statuses,
        "seconds": round(wall, 3),
        "per_second": round((n - errors[0]) / wall, 1),
        "p50_ms": round(pct(lat, 50), 2),
        "p99_ms": round(pct(lat, 99), 2),
    }))
    return 0 if errors[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
