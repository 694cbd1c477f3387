#!/usr/bin/env python3
"""A stand-in for oha in `make bench-check` (standard library only): the same command line
as benches/run.sh gives oha, the same JSON summary out, so the bench's whole pipeline runs
without building oha (10 to 30 minutes the first time). Its throughput and latency are a
Python client's, not Envoy's: `make bench` measures with oha.

  loadgen.py --no-tui --output-format json -m POST -H 'k: v' -D body -z 1s -c 4 [-q rate] URL
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

VERSION = "loadgen.py (oha 1.16.0 command line)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--version", action="store_true")
    p.add_argument("--no-tui", action="store_true")
    p.add_argument("--output-format")
    p.add_argument("--latency-correction", action="store_true")
    p.add_argument("--worker-threads")
    p.add_argument("-m", default="GET")
    p.add_argument("-H", action="append", default=[])
    p.add_argument("-D")
    p.add_argument("-z", default="1s")
    p.add_argument("-c", type=int, default=1)
    p.add_argument("-q", type=float)
    p.add_argument("url", nargs="?")
    a = p.parse_args()
    if a.version:
        print(VERSION)
        return
    url = urllib.parse.urlsplit(a.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = dict(h.split(": ", 1) for h in a.H)
    body = open(a.D, "rb").read() if a.D else None
    seconds = float(a.z.rstrip("s"))
    # Each connection's pace at a fixed rate; none at full speed.
    gap = a.c / a.q if a.q else 0.0
    statuses, errors, latencies, lock = {}, {}, [], threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def client():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if gap:
                time.sleep(max(0.0, next_at - now))
                next_at += gap
            sent = time.monotonic()
            try:
                conn.request(a.m, target, body=body, headers=headers)
                res = conn.getresponse()
                res.read()
                key, table = str(res.status), statuses
                if res.getheader("connection") == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                key, table = type(e).__name__, errors
                conn.close()
            with lock:
                table[key] = table.get(key, 0) + 1
                latencies.append(time.monotonic() - sent)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(a.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.monotonic() - start
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    json.dump({
        "summary": {"total": total, "requestsPerSec": sum(statuses.values()) / total if total else 0},
        "statusCodeDistribution": statuses,
        "errorDistribution": errors,
        "latencyPercentiles": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p99.9": pct(0.999)},
    }, sys.stdout)


if __name__ == "__main__":
    main()
