#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 60), two at a time.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets when none is named)
#
# New inputs go to fuzz/work/<target>/ (not committed); the seeds in fuzz/corpus/<target>/
# are read only. Crash, timeout and out-of-memory inputs go to fuzz/artifacts/<target>/,
# logs to fuzz/logs/<target>.log. Exits non-zero when any target crashed (or the build
# failed). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets it pass its nightly-only flags.
#
# The inputs in fuzz/regressions/<target>/ (past crashes) are loaded first, so an open or
# returning bug fails the run at once.
#
# Environment: FUZZ_JOBS (parallel targets, default 2), FUZZ_SANITIZER (none|address,
# default none: the crate has no unsafe code, and none runs about twice as fast),
# FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

# Every target in fuzz_targets/: a new one needs only its file and its [[bin]].
ALL_TARGETS=($(for f in fuzz_targets/*.rs; do basename "$f" .rs; done))
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
JOBS=${FUZZ_JOBS:-2}
SANITIZER=${FUZZ_SANITIZER:-none}
BUILD_FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)

case "$SECS" in ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
for t in "${TARGETS[@]}"; do
  [ -f "fuzz_targets/$t.rs" ] || { echo "unknown target '$t' (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 2; }

dict_for() {
  case "$1" in
    config|azure|vendor_json) echo dict/json.dict ;;
    vendor_xml) echo dict/xml.dict ;;
    vendor_form) echo dict/form.dict ;;
    query) echo dict/query.dict ;;
    route) echo dict/route.dict ;;
  esac
}

echo "building ${TARGETS[*]} (sanitizer $SANITIZER)"
cargo fuzz build "${BUILD_FLAGS[@]}" || { echo "build failed" >&2; exit 1; }

mkdir -p logs
for t in "${TARGETS[@]}"; do mkdir -p "work/$t" "artifacts/$t"; done
# Artifacts newer than this marker were produced by this run.
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

run_one() {
  local t=$1 dirs=("work/$t" "corpus/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  # shellcheck disable=SC2086
  cargo fuzz run "${BUILD_FLAGS[@]}" "$t" "${dirs[@]}" -- \
    -max_total_time="$SECS" -print_final_stats=1 -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -dict="$(dict_for "$t")" \
    ${FUZZ_ARGS:-} >"logs/$t.log" 2>&1
  echo $? >"logs/$t.rc"
}

echo "running ${#TARGETS[@]} target(s) for ${SECS}s each, $JOBS at a time"
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  echo "  start $t"
  run_one "$t" &
done
wait

status=0
printf '\n%-12s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${TARGETS[@]}"; do
  log="logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  corpus=$(find "work/$t" -type f | wc -l)
  found=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" | sort)
  rc=$(cat "logs/$t.rc" 2>/dev/null || echo '?')
  if [ -n "$found" ] || [ "$rc" != 0 ]; then
    result="CRASH (exit $rc) ${found:-see $log}"
    status=1
  else
    result="ok, no crash"
  fi
  printf '%-12s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "$corpus" "$(echo $result)"
done
[ $status -eq 0 ] || echo "a target crashed: reproduce with 'cargo fuzz run <target> <artifact>', minimise with 'cargo fuzz tmin <target> <artifact>'" >&2
exit $status
