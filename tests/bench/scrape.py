#!/usr/bin/env python3
"""scrape.py: fetch a URL at a fixed rate until SIGTERM, like a busy
Prometheus.  One keep-alive HTTP/1.1 connection (reopened after an error),
so what is measured is the server's cost of rendering, not ours of
connecting.  On exit prints one JSON line: scrapes done, failures, seconds.

usage: scrape.py HOST PORT PATH HZ
"""
import http.client
import json
import signal
import sys
import time


def main():
    host, port, path, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
        float(sys.argv[4])
    ok = failed = 0
    conn = None
    start = time.monotonic()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    tick = 0
    while not stop:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                ok += 1
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
            if conn is not None:
                conn.close()
            conn = None
        tick += 1
        # A fixed schedule: a slow scrape is not followed by a burst.
        delay = start + tick / hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            tick = int((time.monotonic() - start) * hz)
    print(json.dumps({"scrapes": ok, "failures": failed,
                      "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
