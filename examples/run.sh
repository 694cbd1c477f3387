#!/usr/bin/env bash
# Starts the demo upstream and Envoy with webhook-guard (envoy.yaml) in the foreground.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=${ENVOY:-.tools/envoy/envoy/_bin/envoy}
PYTHON=${PYTHON:-python3}

"$PYTHON" examples/demo_upstream.py 18080 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT INT TERM

cat <<MSG

webhook-guard is starting on http://127.0.0.1:10000 (admin: http://127.0.0.1:9901/stats).
Send the documentation's sample notification from another terminal:

  curl -i -X POST 'http://127.0.0.1:10000/api/resource?sig=demo-secret' \\
       -H 'content-type: application/json' \\
       --data-binary @examples/requests/azure-service-catalog.json

The demo upstream prints the normalised CloudEvent it receives. Try a wrong sig for a 403.
Ctrl-C stops Envoy and the demo upstream.

MSG
"$ENVOY" -c envoy.yaml --concurrency 2 --log-level warn --component-log-level wasm:info
