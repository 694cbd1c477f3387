#!/usr/bin/env python3
"""Stand-in for Azure's token issuers and Azure Resource Manager, for the end-to-end tests.

One HTTP/1.1 server on 127.0.0.1 (port printed on stdout) answers:
  POST /{tenant}/oauth2/v2.0/token          Entra ID client credentials (expires_in a number)
  GET  /metadata/identity/oauth2/token?...  instance metadata service (expires_in a string;
                                            requires `Metadata: true`, as IMDS does)
  GET  /subscriptions/.../applications/...  ARM: the application's provisioningState
and records every such request. The test steers it through two control paths:
  POST /_control   JSON {"token": {...}, "arm": [{...}, ...]} replaces the behaviour
  GET  /_requests  JSON list of recorded requests (method, path, headers, body, at)
Token behaviour: {"status": 200, "expires_in": 3600, "delay": 0}. ARM behaviour: a list
of answers used in turn (the last one repeats): {"status": 200, "state": "Succeeded",
"delay": 0, "retry_after": null}. Every token issued is distinct: tok-<n>. ARM refuses
the tokens listed in "arm_reject" (e.g. ["tok-1"], or "*" for all) with ARM's 401 before
any of those answers. An optional first argument is a /_control JSON applied before the
server starts.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"token": {"status": 200, "expires_in": 3600, "delay": 0}, "arm": [{"status": 200, "state": "Succeeded"}], "arm_reject": [], "arm_served": 0, "issued": 0}
REQUESTS = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are two writes: without this, Nagle holds the body for Envoy's ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def record(self, body):
        with LOCK:
            REQUESTS.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                             "body": body.decode("utf-8", "replace"), "at": time.monotonic()})

    def do_GET(self):
        if self.path == "/_requests":
            with LOCK:
                return self.answer(200, REQUESTS)
        self.record(b"")
        if self.path.startswith("/metadata/identity/oauth2/token"):
            if self.headers.get("metadata") != "true":
                return self.answer(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            return self.token(as_text=True)
        if self.path.startswith("/subscriptions/"):
            return self.arm()
        self.answer(404, {"error": "no such path"})

    def do_POST(self):
        body = self.body()
        if self.path == "/_control":
            with LOCK:
                STATE.update(json.loads(body))
                STATE["arm_served"] = 0
                REQUESTS.clear()
            return self.answer(200, {})
        self.record(body)
        if self.path.endswith("/oauth2/v2.0/token"):
            return self.token(as_text=False)
        self.answer(404, {"error": "no such path"})

    def token(self, as_text):
        with LOCK:
            behaviour = dict(STATE["token"])
            STATE["issued"] += 1
            issued = STATE["issued"]
        time.sleep(behaviour.get("delay", 0))
        status = behaviour.get("status", 200)
        if status != 200:
            return self.answer(status, {"error": "stand-in failure", "error_description": "AADSTS7000215: Invalid client secret provided."})
        expires = behaviour.get("expires_in", 3600)
        expires = str(expires) if as_text else expires
        body = {"token_type": "Bearer", "expires_in": expires, "access_token": f"tok-{issued}"}
        if as_text:
            body.update({"expires_on": str(int(time.time()) + int(expires)), "resource": "https://management.azure.com/"})
        self.answer(200, body)

    def arm(self):
        token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        with LOCK:
            refused = STATE["arm_reject"] == "*" or token in STATE["arm_reject"]
        if refused:
            # ARM's answer to a token it does not accept (expired, revoked, another tenant).
            challenge = 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The access token is invalid."'
            return self.answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}, [("www-authenticate", challenge)])
        with LOCK:
            answers = STATE["arm"]
            behaviour = dict(answers[min(STATE["arm_served"], len(answers) - 1)])
            STATE["arm_served"] += 1
        time.sleep(behaviour.get("delay", 0))
        status = behaviour.get("status", 200)
        path = self.path.split("?")[0]
        if status == 200:
            body = {"id": path, "name": path.rsplit("/", 1)[-1], "type": "Microsoft.Solutions/applications", "kind": "ServiceCatalog",
                    "location": "westeurope", "properties": {"provisioningState": behaviour.get("state", "Succeeded"), "managedResourceGroupId": "/subscriptions/x/resourceGroups/mrg"}}
        else:
            body = {"error": {"code": f"Stand-in{status}", "message": "stand-in answer"}}
        retry = behaviour.get("retry_after")
        self.answer(status, body, [("retry-after", str(retry))] if retry is not None else [])


def main():
    if len(sys.argv) > 1:
        STATE.update(json.loads(sys.argv[1]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
