#!/usr/bin/env python3
"""Time from process start to /readyz answering 200.

usage: readyz_timer.py BIN DATA_DIR PORT [extra serve flags...]

Starts `BIN serve` on DATA_DIR and 127.0.0.1:PORT, polls GET /readyz over a new TCP connection
every ~1 ms, prints the milliseconds from just before the fork/exec to the first 200, then stops
the server with SIGTERM and waits for it. Exits 1 if the server does not get ready in 30 s.
"""

import os
import signal
import socket
import subprocess
import sys
import time


def ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main() -> int:
    binary, data, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = sys.argv[4:]
    url = f"http://127.0.0.1:{port}"
    argv = [binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--public-url", url, *extra]
    with open(data + ".log", "ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            while True:
                if ready(port):
                    elapsed = (time.perf_counter() - t0) * 1000
                    break
                if proc.poll() is not None:
                    print(f"server exited with {proc.returncode} before it was ready", file=sys.stderr)
                    return 1
                if time.perf_counter() - t0 > 30:
                    print("server not ready after 30 s", file=sys.stderr)
                    return 1
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(f"{elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
