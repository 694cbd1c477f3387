#!/usr/bin/env bash
# Starts the demo upstream and Envoy with webhook-guard (envoy.yaml), prints how to try it
# once Envoy is ready (or only Envoy's error when it refuses the configuration), and runs
# until Ctrl-C, which stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=${ENVOY:-.tools/envoy/envoy/_bin/envoy}
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-envoy.yaml}

"$PYTHON" examples/demo_upstream.py 18080 &
upstream=$!
envoy=
trap 'kill $upstream $envoy 2>/dev/null || true' EXIT INT TERM

# A dynamic base id: another Envoy on this machine (a sidecar, a test) holds base id 0's
# shared-memory socket, and Envoy would refuse to start.
"$ENVOY" -c "$CONFIG" --concurrency 2 --use-dynamic-base-id --log-level warn --component-log-level wasm:info &
envoy=$!
until curl -fs -o /dev/null http://127.0.0.1:9901/ready; do
  # Envoy exited: it refused the configuration and has printed why.
  kill -0 "$envoy" 2>/dev/null || { wait "$envoy" || true; exit 1; }
  sleep 0.2
done

cat <<MSG

webhook-guard is ready on http://127.0.0.1:10000 (admin: http://127.0.0.1:9901/stats).
Send the documentation's sample notification from another terminal:

  curl -i -X POST 'http://127.0.0.1:10000/api/resource?sig=demo-secret' \\
       -H 'content-type: application/json' \\
       --data-binary @examples/requests/azure-service-catalog.json

The demo upstream prints the normalised CloudEvent it receives. Try a wrong sig for a 403.
Ctrl-C stops Envoy and the demo upstream.

MSG
wait "$envoy"
