#!/usr/bin/env bash
# Sends every sample in examples/requests/ (and two refusals) to `make run` and prints
# what webhook-guard answered. The demo upstream prints what it received.
set -uo pipefail
cd "$(dirname "$0")"
BASE=${BASE:-http://127.0.0.1:10000}
SIG=${SIG:-demo-secret}

out=$(mktemp)
trap 'rm -f "$out"' EXIT

send() { # method path content-type file
  printf '%-6s %-14s %-34s -> ' "$1" "$2" "$(basename "$4")"
  : > "$out"
  if ! code=$(curl -s -o "$out" -w '%{http_code}' -X "$1" "$BASE$2?sig=$SIG" \
                   -H "content-type: $3" --data-binary @"$4"); then
    echo "no answer: Envoy is not reachable at $BASE (start it with: make run)"
    exit 1
  fi
  printf '%s ' "$code"; head -c 160 "$out"; echo
}

send POST /api/resource application/json requests/azure-service-catalog.json
send POST /api/resource application/json requests/azure-marketplace-failed.json
send POST /hooks/store  application/json requests/vendor-ping.json
send PUT  /hooks/store  application/xml  requests/vendor-purchase.xml
send POST /hooks/store  application/x-www-form-urlencoded requests/vendor-cancellation.form
SIG=wrong send POST /api/resource application/json requests/azure-service-catalog.json
send PUT  /api/resource application/json requests/azure-service-catalog.json
