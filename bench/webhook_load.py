#!/usr/bin/env python3
"""Webhook delivery benchmark helper (issue 6): a fast loopback receiver, an event writer, and
the idle-latency probe. Run by bench/webhooks.sh.

usage:
  webhook_load.py receiver PORT
      An HTTP/1.1 keep-alive server on 127.0.0.1:PORT (asyncio Protocol, hand-parsed: no
      http.server, no framework) that answers every POST with `204 No Content` and records, per
      request, its arrival time (time.monotonic(), i.e. CLOCK_MONOTONIC, comparable across
      processes on this machine), the `webhook-id` header, the request path, and the body's
      `event` and `data.id`. Control paths (GET): /_stats (counts), /_records (all records as
      JSON lines), /_reset (forget everything), /_wait?n=K&timeout=S (answers once K deliveries
      have arrived, or after S seconds). Stops on SIGTERM.
  webhook_load.py throughput SERVER_URL ADMIN_KEY ENV N CONCURRENCY PREFIX RECV_URL PER_EVENT DRAIN_S [SERVER_PID [RATE]]
      Resets the receiver; N organization creates from CONCURRENCY threads (each one keep-alive
      connection, as bench/admin_load.py), each create producing one `organization.created`
      event and PER_EVENT deliveries (one per endpoint); then waits up to DRAIN_S seconds for
      N × PER_EVENT deliveries of those events; prints one JSON object (see `analyse`). With
      RATE > 0 the creates are paced (open loop): create i is sent at start + i / RATE.
  webhook_load.py idle SERVER_URL ADMIN_KEY ENV SAMPLES RECV_URL PAUSE_MIN_S PAUSE_MAX_S
      SAMPLES times: one organization create, wait until its delivery has arrived, then a random
      pause in [PAUSE_MIN_S, PAUSE_MAX_S] (random, so the writes fall at every phase of the
      dispatcher's poll timer). Latency = receiver arrival − the moment the admin API's answer
      was read (and, for reference, − the moment the request was sent). Prints one JSON object.
  webhook_load.py drain RECV_URL EXPECTED DRAIN_S [SERVER_PID]
      After a restart with a backlog: waits for EXPECTED organization.created deliveries and
      reports the delivery rate (first → last arrival, the 10th → 90th percentile, per tenth).
  webhook_load.py reset RECV_URL
      Forgets the receiver's records.
  webhook_load.py report WEBHOOKS_JSON
      The Markdown tables of a bench/webhooks.sh summary (target/bench/webhooks.json).
  webhook_load.py summary < RESULT_JSON
      One line of a `throughput` result, for the log.
  webhook_load.py receiver-ceiling RECV_URL SECONDS CONNECTIONS
      Not a server benchmark: how many deliveries/s the receiver itself can take from a simple
      keep-alive client (threads of http.client, in this process), for reference. bench/webhooks.sh
      uses wrk for this when it is installed.
"""

import asyncio
import http.client
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

# ----------------------------------------------------------------------------------------------
# receiver


class Receiver:
    def __init__(self):
        self.records = []  # (arrival, webhook_id, path, event, data_id)
        self.bad = 0
        self.by_event = {}
        self.waiters = []  # (n, event or None, future)

    def count(self, event=None):
        return len(self.records) if event is None else self.by_event.get(event, 0)

    def reset(self):
        self.records, self.bad, self.by_event = [], 0, {}

    def record(self, rec):
        self.records.append(rec)
        self.by_event[rec[3]] = self.by_event.get(rec[3], 0) + 1
        if self.waiters:
            keep = []
            for k, ev, fut in self.waiters:
                if self.count(ev) >= k:
                    if not fut.done():
                        fut.set_result(True)
                else:
                    keep.append((k, ev, fut))
            self.waiters = keep


class Conn(asyncio.Protocol):
    OK = b"HTTP/1.1 204 No Content\r\n\r\n"

    def __init__(self, rx: Receiver):
        self.rx = rx
        self.buf = b""
        self.t = None

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0") or 0)
            if len(self.buf) < i + 4 + n:
                return
            body = self.buf[i + 4:i + 4 + n]
            self.buf = self.buf[i + 4 + n:]
            arrival = time.monotonic()
            if path.startswith("/_"):
                asyncio.ensure_future(self.control(path))
                continue
            event = data_id = None
            try:
                o = json.loads(body)
                event = o.get("event")
                data_id = (o.get("data") or {}).get("id")
            except (ValueError, AttributeError):
                self.rx.bad += 1
            self.rx.record((arrival, hdrs.get("webhook-id"), path, event, data_id))
            self.t.write(self.OK)

    async def control(self, path):
        u = urlsplit(path)
        q = parse_qs(u.query)
        rx = self.rx
        if u.path == "/_stats":
            body = json.dumps({"count": len(rx.records), "bad": rx.bad, "by_event": rx.by_event,
                               "unique_ids": len({r[1] for r in rx.records})}).encode()
        elif u.path == "/_records":
            body = "".join(json.dumps(r) + "\n" for r in rx.records).encode()
        elif u.path == "/_reset":
            rx.reset()
            body = b"{}"
        elif u.path == "/_wait":
            k = int(q.get("n", ["1"])[0])
            ev = q.get("event", [None])[0]
            timeout = float(q.get("timeout", ["10"])[0])
            if rx.count(ev) < k:
                fut = asyncio.get_running_loop().create_future()
                rx.waiters.append((k, ev, fut))
                try:
                    await asyncio.wait_for(fut, timeout)
                except asyncio.TimeoutError:
                    pass
            body = json.dumps({"count": rx.count(ev)}).encode()
        else:
            body = b"{}"
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)


def receiver(port):
    loop = asyncio.new_event_loop()
    rx = Receiver()
    server = loop.run_until_complete(loop.create_server(lambda: Conn(rx), "127.0.0.1", port, backlog=1024))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
    return 0


# ----------------------------------------------------------------------------------------------
# clients


def get_json(recv_url, path, timeout=60):
    u = urlsplit(recv_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    if path.startswith("/_records"):
        return [json.loads(line) for line in data.splitlines() if line]
    return json.loads(data)


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    i = min(len(sorted_v) - 1, max(0, int(round(p / 100 * len(sorted_v) + 0.5)) - 1))
    return sorted_v[i]


def cpu_seconds(pid):
    """User + system CPU seconds of the process, and per thread name (comm)."""
    if not pid:
        return None, {}
    tck = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        s = f.read().rsplit(")", 1)[1].split()
    total = (int(s[11]) + int(s[12])) / tck
    per = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        t = raw.rsplit(")", 1)[1].split()
        # Thread names like tokio-runtime-w / sqlx-sqlite-wor: group them without their numbers.
        name = comm.rstrip("0123456789-_ ")
        per[name] = per.get(name, 0) + (int(t[11]) + int(t[12])) / tck
    return total, per


class Writer:
    """Organization creates over keep-alive connections; records (org id, sent, answered)."""

    def __init__(self, url, key, env):
        self.u = urlsplit(url)
        self.path = f"/admin/v1/environments/{env}/organizations"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def conn(self):
        return http.client.HTTPConnection(self.u.hostname, self.u.port, timeout=30)

    def create(self, conn, name):
        body = json.dumps({"name": name})
        t0 = time.monotonic()
        try:
            conn.request("POST", self.path, body=body, headers=self.headers)
            r = conn.getresponse()
            data = r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            return None, t0, time.monotonic(), 0
        t1 = time.monotonic()
        org = None
        if status == 201:
            try:
                org = json.loads(data)["id"]
            except (ValueError, KeyError):
                status = -1
        return org, t0, t1, status


def analyse(writes, records, per_event, t_start, t_writes_end, expected_orgs):
    """writes: [(org, sent, answered)]; records: receiver records."""
    orgs = {w[0]: w for w in writes}
    mine = [r for r in records if r[3] == "organization.created" and r[4] in orgs]
    other = len(records) - len(mine)
    ids = {}
    for r in mine:
        ids.setdefault((r[1], r[2]), []).append(r[0])
    firsts = sorted(min(v) for v in ids.values())  # first arrival of each (webhook-id, endpoint)
    dup = len(mine) - len(ids)
    n = len(firsts)
    out = {"deliveries_expected": expected_orgs * per_event, "deliveries_received": n,
           "duplicate_requests": dup, "other_requests": other}
    if not n:
        return out
    t_last = firsts[-1]
    out["whole_run_s"] = round(t_last - t_start, 3)
    out["deliveries_per_s_whole_run"] = round(n / (t_last - t_start), 1)
    during = sum(1 for t in firsts if t <= t_writes_end)
    by_ep = {}
    for (wid, path), v in ids.items():
        e = by_ep.setdefault(path, [0, 0])
        e[0] += 1
        e[1] += min(v) <= t_writes_end
    # Per endpoint: [deliveries, of which during the writes] (shows an endpoint left behind).
    out["by_endpoint"] = {k: by_ep[k] for k in sorted(by_ep)}
    out["deliveries_during_writes"] = during
    out["deliveries_per_s_during_writes"] = round(during / (t_writes_end - t_start), 1)
    out["backlog_at_writes_end"] = expected_orgs * per_event - during
    if n - during >= 500 and t_last > t_writes_end:
        out["deliveries_per_s_drain"] = round((n - during) / (t_last - t_writes_end), 1)
        out["drain_s"] = round(t_last - t_writes_end, 3)
    # Steady part: between the 10th and the 90th percentile of arrivals (drops the start-up and
    # the tail).
    a, b = firsts[int(n * 0.1)], firsts[int(n * 0.9) - 1]
    if b > a:
        out["deliveries_per_s_steady_p10_p90"] = round((int(n * 0.9) - 1 - int(n * 0.1)) / (b - a), 1)
    # Per-second arrivals over the run (for the JSON only), and the median over full seconds.
    secs = {}
    for t in firsts:
        secs[int(t - t_start)] = secs.get(int(t - t_start), 0) + 1
    last = int(t_last - t_start)
    timeline = [secs.get(i, 0) for i in range(last + 1)]
    out["deliveries_per_second_timeline"] = timeline
    if len(timeline) > 2:
        out["deliveries_per_s_median_full_second"] = statistics.median(timeline[1:-1]) if len(timeline) > 3 else timeline[1]
    # End-to-end latency under load: first arrival − the create's answer (one endpoint's view).
    by_org = {}
    for r in mine:
        by_org.setdefault(r[4], []).append(r[0])
    lat = sorted((min(v) - orgs[o][2]) * 1000 for o, v in by_org.items())
    out["latency_under_load_ms"] = {"p50": round(pct(lat, 50), 1), "p99": round(pct(lat, 99), 1),
                                    "max": round(lat[-1], 1)}
    return out


def throughput(url, key, env, n, conc, prefix, recv_url, per_event, drain_s, server_pid=None, rate=0.0):
    get_json(recv_url, "/_reset")
    w = Writer(url, key, env)
    lock = threading.Lock()
    counter = iter(range(n))
    writes, errors, statuses, lat = [], [0], {}, []

    def worker():
        conn = w.conn()
        mine, ml = [], []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            if rate:
                # Paced (open loop): create i is due at t_start + i / rate.
                d = t_start + i / rate - time.monotonic()
                if d > 0:
                    time.sleep(d)
            org, t0, t1, status = w.create(conn, f"{prefix} org {i}")
            ml.append((t1 - t0) * 1000)
            if status == 201:
                mine.append((org, t0, t1))
            else:
                conn.close()
                conn = w.conn()
                with lock:
                    errors[0] += 1
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()
        with lock:
            writes.extend(mine)
            lat.extend(ml)

    cpu0, per0 = cpu_seconds(server_pid)
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    t_start = time.monotonic() + 0.05
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_writes_end = time.monotonic()
    cpu_w, per_w = cpu_seconds(server_pid)
    expected = len(writes) * per_event
    deadline = t_writes_end + drain_s
    while time.monotonic() < deadline:
        got = get_json(recv_url, f"/_wait?n={expected}&event=organization.created"
                                 f"&timeout={min(5.0, max(0.1, deadline - time.monotonic()))}")
        if got["count"] >= expected:
            break
    t_done = time.monotonic()
    cpu1, per1 = cpu_seconds(server_pid)
    records = get_json(recv_url, "/_records")
    lat.sort()
    out = {
        "events_written": len(writes),
        "write_errors": errors[0],
        "write_error_statuses": statuses,
        "concurrency": conc,
        "paced_events_per_s": rate or None,
        "deliveries_per_event": per_event,
        "write_s": round(t_writes_end - t_start, 3),
        "events_written_per_s": round(len(writes) / (t_writes_end - t_start), 1),
        "write_p50_ms": round(pct(lat, 50), 2),
        "write_p99_ms": round(pct(lat, 99), 2),
        "drained": t_done < deadline,
    }
    out.update(analyse(writes, records, per_event, t_start, t_writes_end, len(writes)))
    if cpu0 is not None:
        total_cpu = cpu1 - cpu0
        out["server_cpu_s"] = round(total_cpu, 2)
        out["server_cpu_s_during_writes"] = round(cpu_w - cpu0, 2)
        out["server_cpu_s_after_writes"] = round(cpu1 - cpu_w, 2)
        out["server_cpu_by_thread_s"] = {k: round(per1.get(k, 0) - per0.get(k, 0), 2) for k in per1
                                         if per1.get(k, 0) - per0.get(k, 0) >= 0.01}
        if out["deliveries_received"]:
            after = out["deliveries_received"] - out.get("deliveries_during_writes", 0)
            if after > 100:
                # After the writes the server only delivers: CPU per delivery with no writers.
                out["server_cpu_ms_per_delivery_drain"] = round((cpu1 - cpu_w) * 1000 / after, 3)
    return out


def drain(recv_url, expected, drain_s, server_pid=None):
    """Waits for EXPECTED organization.created deliveries (a backlog written while the dispatcher
    was off, delivered by a server that just started) and measures the delivery rate."""
    t0 = time.monotonic()
    deadline = t0 + drain_s
    while time.monotonic() < deadline:
        got = get_json(recv_url, f"/_wait?n={expected}&event=organization.created"
                                 f"&timeout={min(5.0, max(0.1, deadline - time.monotonic()))}")
        if got["count"] >= expected:
            break
    cpu, per = cpu_seconds(server_pid)
    records = get_json(recv_url, "/_records")
    ids = {}
    for r in records:
        if r[3] == "organization.created":
            ids.setdefault((r[1], r[2]), r[0])
    firsts = sorted(ids.values())
    n = len(firsts)
    out = {"deliveries_expected": expected, "deliveries_received": n,
           "duplicate_requests": sum(1 for r in records if r[3] == "organization.created") - n}
    if n > 10:
        out["drain_s"] = round(firsts[-1] - firsts[0], 3)
        out["deliveries_per_s_drain"] = round((n - 1) / (firsts[-1] - firsts[0]), 1)
        a, b = firsts[int(n * 0.1)], firsts[int(n * 0.9) - 1]
        out["deliveries_per_s_steady_p10_p90"] = round((int(n * 0.9) - 1 - int(n * 0.1)) / (b - a), 1)
        # Rate over each tenth of the backlog: shows whether it speeds up as the backlog shrinks.
        out["deliveries_per_s_by_tenth"] = [
            round((n // 10) / max(1e-9, firsts[min(n - 1, (k + 1) * (n // 10))] - firsts[k * (n // 10)]), 1)
            for k in range(10)]
    if cpu is not None:
        out["server_cpu_s_since_start"] = round(cpu, 2)
        out["server_cpu_by_thread_s"] = {k: round(v, 2) for k, v in per.items() if v >= 0.01}
        if n:
            out["server_cpu_ms_per_delivery"] = round(cpu * 1000 / n, 3)
    return out


def idle(url, key, env, samples, recv_url, pmin, pmax):
    get_json(recv_url, "/_reset")
    w = Writer(url, key, env)
    conn = w.conn()
    rng = random.Random(6)
    writes, timeouts = [], 0
    for i in range(samples):
        org, t0, t1, status = w.create(conn, f"idle org {i} {time.time_ns()}")
        if status != 201:
            raise SystemExit(f"create answered {status}")
        writes.append((org, t0, t1))
        got = get_json(recv_url, f"/_wait?n={i + 1}&timeout=10")
        if got["count"] < i + 1:
            timeouts += 1
        time.sleep(rng.uniform(pmin, pmax))
    conn.close()
    records = get_json(recv_url, "/_records")
    arr = {}
    for r in records:
        if r[3] == "organization.created":
            arr.setdefault(r[4], r[0])
    from_answer, from_sent = [], []
    for org, t0, t1 in writes:
        if org in arr:
            from_answer.append((arr[org] - t1) * 1000)
            from_sent.append((arr[org] - t0) * 1000)
    from_answer.sort()
    from_sent.sort()
    return {
        "samples": samples, "received": len(from_answer), "timeouts": timeouts,
        "pause_s": [pmin, pmax],
        "p50_ms": round(pct(from_answer, 50), 2), "p99_ms": round(pct(from_answer, 99), 2),
        "min_ms": round(from_answer[0], 2), "max_ms": round(from_answer[-1], 2),
        "mean_ms": round(statistics.mean(from_answer), 2),
        "from_request_sent_p50_ms": round(pct(from_sent, 50), 2),
        "from_request_sent_p99_ms": round(pct(from_sent, 99), 2),
    }


def receiver_ceiling(recv_url, seconds, conns):
    """Deliveries/s the receiver takes from CONNECTIONS keep-alive Python clients (a lower bound:
    the client is Python too)."""
    get_json(recv_url, "/_reset")
    u = urlsplit(recv_url)
    body = json.dumps({"id": "event_x", "object": "event", "event": "organization.created",
                       "data": {"id": "org_x", "name": "x" * 300}}).encode()
    stop = time.monotonic() + seconds
    counts = []

    def worker():
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        k = 0
        while time.monotonic() < stop:
            c.request("POST", "/in", body=body, headers={"webhook-id": f"msg_{k}", "content-type": "application/json"})
            c.getresponse().read()
            k += 1
        counts.append(k)

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"per_second": round(sum(counts) / seconds, 1), "connections": conns, "seconds": seconds}


def report(path):
    d = json.load(open(path))
    f = lambda x, nd=0: "—" if x is None else f"{x:,.{nd}f}"
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    L = []
    w = L.append
    rc = d.get("receiver_ceiling") or {}
    w(f"Conditions: {d['conditions'].replace(chr(10), '; ')}"
      + (f"; PostgreSQL {d['postgres_version']}" if d.get("postgres_version") else "") + ".\n")
    if rc.get("c4_per_s"):
        w(f"Receiver ceiling (wrk, one thread, beside the idle server): {f(rc['c4_per_s'])}/s at 4 connections, "
          f"{f(rc['c16_per_s'])}/s at 16.\n")
    for b in dict.fromkeys(r["backend"] for r in d["runs"]):
        rows = [r for r in d["runs"] if r["backend"] == b]
        th = [r for r in rows if r["kind"] == "throughput"]
        if th:
            w(f"**{names.get(b, b)}: events written while delivering** (N = {d['n']} events, {d['concurrency']} writers)\n")
            w("| Configuration | Endpoints × in flight each | Writes | Events written/s | Deliveries/s: whole run | while writing | steady (p10–p90) | draining after | Backlog when writes ended | Latency under load p50 / p99 |")
            w("|---|---|---|---|---|---|---|---|---|---|")
            for r in th:
                x = r["result"]
                lat = x.get("latency_under_load_ms") or {}
                w(f"| {r['label']} | {r['endpoints']} × {r['per_endpoint_in_flight']} | {r.get('mode', 'max')} | {f(x['events_written_per_s'])} | "
                  f"{f(x.get('deliveries_per_s_whole_run'))} | {f(x.get('deliveries_per_s_during_writes'))} | "
                  f"{f(x.get('deliveries_per_s_steady_p10_p90'))} | {f(x.get('deliveries_per_s_drain'))} | "
                  f"{f(x.get('backlog_at_writes_end'))} | {f(lat.get('p50'))} / {f(lat.get('p99'))} ms |")
            w("")
        dr = [r for r in rows if r["kind"] == "drain"]
        if dr:
            w(f"**{names.get(b, b)}: delivering a backlog, no writes** (written with the dispatcher off, then a new process)\n")
            w("| Configuration | Endpoints × in flight each | Backlog | Deliveries/s | First → last tenth of the backlog | Server CPU per delivery |")
            w("|---|---|---|---|---|---|")
            for r in dr:
                x = r["result"]
                t = x.get("deliveries_per_s_by_tenth") or [None]
                w(f"| {r['label']} | {r['endpoints']} × {r['per_endpoint_in_flight']} | {f(x['deliveries_expected'])} | "
                  f"{f(x.get('deliveries_per_s_drain'))} | {f(t[0])} → {f(t[-1])}/s | {f(x.get('server_cpu_ms_per_delivery'), 2)} ms |")
            w("")
        idl = [r for r in rows if r["kind"] == "idle"]
        if idl:
            w(f"**{names.get(b, b)}: idle end-to-end latency** (admin API answer read → arrival at the receiver; {d['idle_samples']} single events)\n")
            w("| Poll interval | p50 | p99 | min / max | Received |")
            w("|---|---|---|---|---|")
            for r in idl:
                x = r["result"]
                w(f"| {r['poll_ms']} ms | {f(x['p50_ms'], 1)} ms | {f(x['p99_ms'], 1)} ms | {f(x['min_ms'], 1)} / {f(x['max_ms'], 1)} ms | {x['received']}/{x['samples']} |")
            w("")
    return "\n".join(L)


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "receiver":
        return receiver(int(a[0]))
    if cmd == "throughput":
        out = throughput(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5], a[6], int(a[7]), float(a[8]),
                         int(a[9]) if len(a) > 9 and a[9] else None, float(a[10]) if len(a) > 10 else 0.0)
        print(json.dumps(out))
        return 0 if out["write_errors"] == 0 and out["drained"] else 1
    if cmd == "reset":
        get_json(a[0], "/_reset")
        return 0
    if cmd == "drain":
        out = drain(a[0], int(a[1]), float(a[2]), int(a[3]) if len(a) > 3 else None)
        print(json.dumps(out))
        return 0 if out["deliveries_received"] >= out["deliveries_expected"] else 1
    if cmd == "idle":
        out = idle(a[0], a[1], a[2], int(a[3]), a[4], float(a[5]), float(a[6]))
        print(json.dumps(out))
        return 0 if out["received"] == out["samples"] else 1
    if cmd == "report":
        print(report(a[0]))
        return 0
    if cmd == "summary":
        r = json.loads(sys.stdin.read() or "{}")
        g = r.get
        print(f"  events {g('events_written')} in {g('write_s')} s = {g('events_written_per_s')}/s"
              f" (p50 {g('write_p50_ms')} ms, p99 {g('write_p99_ms')} ms);"
              f" deliveries {g('deliveries_received')}/{g('deliveries_expected')}:"
              f" whole run {g('deliveries_per_s_whole_run')}/s, during writes {g('deliveries_per_s_during_writes')}/s,"
              f" steady {g('deliveries_per_s_steady_p10_p90')}/s, drain {g('deliveries_per_s_drain')}/s;"
              f" backlog at end of writes {g('backlog_at_writes_end')}; latency under load {g('latency_under_load_ms')};"
              f" server CPU {g('server_cpu_s')} s {g('server_cpu_by_thread_s')}")
        return 0
    if cmd == "receiver-ceiling":
        print(json.dumps(receiver_ceiling(a[0], float(a[1]), int(a[2]))))
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
