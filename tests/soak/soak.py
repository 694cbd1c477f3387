#!/usr/bin/env python3
"""Soak: a mix of valid, nonconforming, invalid and rate-limited notifications through
Envoy (2 workers) with webhook-guard, for a set time, in one header mode (`stream`, the
default, or `hold`). Reports throughput, status counts, errors, and Envoy's memory at the
start and the end; any unexpected answer fails it. Loopback only; stops by itself.

    python3 tests/soak/soak.py --seconds 600 --header-mode stream --envoy .tools/envoy/envoy/_bin/envoy --wasm webhook_guard.wasm
"""
import argparse
import http.client
import http.server
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "soak-secret"
PLUGIN = {
    "log_level": "off",
    "endpoints": [
        {"name": "azure", "path": "/api/resource", "profile": "azure_managed_app",
         "secret": {"values": [SECRET]}, "dedupe_seconds": 600,
         "rate_limit": {"per_second": 100000, "burst": 100000, "key": "application"}},
        {"name": "limited", "path": "/limited", "profile": "azure_managed_app",
         "secret": {"values": [SECRET]}, "rate_limit": {"per_second": 50, "burst": 50}},
    ],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        # A streamed head's CloudEvent comes chunked (its length is not known when the head
        # goes): the answer must wait for the whole body, or the filter rightly turns an
        # answer before delivery into a 502.
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.rfile.read(size + 2)
        else:
            self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Envoy resets the upstream request of a streamed head whose body is refused.
        pass


def bootstrap(wasm, admin, listener, upstream, header_mode):
    plugin = json.dumps({"header_mode": header_mode, **PLUGIN})
    return f"""
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listener} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: soak
          route_config:
            virtual_hosts:
            - {{ name: b, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: backend }} }}] }}
          http_filters:
          - name: webhook_guard
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: webhook_guard
                vm_config: {{ vm_id: webhook_guard, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}
                allow_on_headers_stop_iteration: true
                failure_policy: FAIL_RELOAD
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {json.dumps(plugin)}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"""


def notification(app, n, state="Succeeded", event_type="PUT"):
    return json.dumps({
        "eventType": event_type, "provisioningState": state,
        "applicationId": f"/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Solutions/applications/{app}",
        # Unique per request (n < 6e8): every valid notification is a new event.
        "eventTime": f"2024-03-01T10:{(n // 10**7) % 60:02d}:00.{n % 10**7:07d}Z",
        "applicationDefinitionId": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Solutions/applicationDefinitions/d",
    })


# (share of requests, path, body builder, accepted statuses)
MIX = [
    (60, f"/api/resource?sig={SECRET}", lambda n: notification(f"app-{n % 500}", n), {200}),
    (10, "/api/resource?sig=wrong", lambda n: notification("x", n), {403}),
    # An invalid (eventType, provisioningState) pair is forwarded, flagged nonconforming.
    (5, f"/api/resource?sig={SECRET}", lambda n: notification("x", n, "Deleted", "PATCH"), {200}),
    # Without an eventType it can never be a notification: refused after the body.
    (5, f"/api/resource?sig={SECRET}", lambda n: json.dumps({k: v for k, v in json.loads(notification("x", n)).items() if k != "eventType"}), {400}),
    (20, f"/limited?sig={SECRET}", lambda n: notification(f"app-{n % 7}", n), {200, 429}),
]


def memory(admin, pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    conn.request("GET", "/memory")
    allocated = int(json.loads(conn.getresponse().read())["allocated"])
    return rss, allocated


def worker(port, deadline, counter, stats, lock):
    weights = [m[0] for m in MIX]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.time() < deadline:
        with lock:
            counter[0] += 1
            n = counter[0]
        share, path, body, accepted = random.choices(MIX, weights)[0]
        try:
            conn.request("POST", path, body=body(n), headers={"content-type": "application/json"})
            res = conn.getresponse()
            res.read()
            key = res.status if res.status in accepted else f"unexpected {res.status}"
            if res.getheader("connection") == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        except (OSError, http.client.HTTPException) as e:
            key = f"error {type(e).__name__}"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with lock:
            stats[key] = stats.get(key, 0) + 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--header-mode", choices=["stream", "hold"], default="stream")
    p.add_argument("--envoy", default=".tools/envoy/envoy/_bin/envoy")
    p.add_argument("--wasm", default="webhook_guard.wasm")
    args = p.parse_args()

    upstream_port, admin, listener = free_port(), free_port(), free_port()
    upstream = Server(("127.0.0.1", upstream_port), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="webhook-guard-soak-")
    config = os.path.join(work, "envoy.yaml")
    with open(config, "w") as f:
        f.write(bootstrap(os.path.abspath(args.wasm), admin, listener, upstream_port, args.header_mode))
    log = open(os.path.join(work, "envoy.log"), "w")
    envoy = subprocess.Popen([args.envoy, "-c", config, "--concurrency", "2", "--disable-hot-restart",
                              "--log-level", "warn"], stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", listener), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"Envoy did not start; see {log.name}")
        time.sleep(1)
        start_mem = memory(admin, envoy.pid)
        stats, counter, lock = {}, [0], threading.Lock()
        start = time.time()
        deadline = start + args.seconds
        threads = [threading.Thread(target=worker, args=(listener, deadline, counter, stats, lock))
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        samples = []
        while time.time() < deadline:
            time.sleep(min(10, max(0.1, deadline - time.time())))
            samples.append((round(time.time() - start), *memory(admin, envoy.pid)))
        for t in threads:
            t.join()
        elapsed = time.time() - start
        end_mem = memory(admin, envoy.pid)
        total = sum(stats.values())
        errors = sum(v for k, v in stats.items() if isinstance(k, str))
        print(f"soak: {args.seconds} s, {args.clients} clients, Envoy --concurrency 2, header_mode {args.header_mode}")
        print(f"requests: {total} ({total / elapsed:.0f}/s)")
        print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items(), key=str)))
        print(f"errors: {errors}")
        print(f"envoy memory at start: rss {start_mem[0] / 2**20:.1f} MiB, allocated {start_mem[1] / 2**20:.1f} MiB")
        print(f"envoy memory at end:   rss {end_mem[0] / 2**20:.1f} MiB, allocated {end_mem[1] / 2**20:.1f} MiB")
        print("samples (s, rss MiB, allocated MiB): " + " ".join(f"{s}:{r / 2**20:.1f}/{a / 2**20:.1f}" for s, r, a in samples))
        if envoy.poll() is not None:
            sys.exit("Envoy exited during the soak")
        if errors:
            sys.exit(f"{errors} errors")
        if not all(stats.get(status) for status in (200, 400, 403)):
            sys.exit("the mix did not exercise every answer (200, 400, 403)")
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)
        upstream.shutdown()


if __name__ == "__main__":
    main()
