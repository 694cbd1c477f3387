#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation and runs them, two at a
# time (fuzz/README.md):
#
#   fuzz/run.sh [SECONDS] [TARGET...]     each target for SECONDS (default 60): `make fuzz`
#   fuzz/run.sh --runs N [TARGET...]      each target for N executions from seed 1: `make test`
#   fuzz/run.sh --replay [TARGET...]      each input of corpus/ and regressions/ once: releases
#
# A target is every fuzz_targets/<target>.rs (with its [[bin]] in Cargo.toml); it reads
# its seeds from corpus/<target>/, its past failures from regressions/<target>/ (loaded
# first, so a returning bug fails at once) and its dictionary from dict/<target>.dict,
# each when present. Timed runs keep new inputs in work/<target>/ (not committed); the
# other modes start from an empty scratch corpus every time, so a run depends on nothing
# but the commit: `--runs` gives the same executions, in the same order, every time.
# Failing inputs go to artifacts/<target>/, logs to logs/<target>.log. Exits non-zero
# when any target failed (or the build did).
#
# The build needs no cargo-fuzz and no nightly: it passes cargo-fuzz's own coverage flags
# (`-Cpasses=sancov-module` and `-Cllvm-args`, all stable), builds no sanitizer (the crate
# has no unsafe code; none runs about twice as fast) and keeps debug assertions, so integer
# overflow panics. FUZZ_SANITIZER=address adds ASan, which needs RUSTC_BOOTSTRAP=1.
#
# Environment: FUZZ_JOBS (parallel targets, default 2), FUZZ_SANITIZER (none|address),
# FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail

cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

usage() { echo "usage: $0 [SECONDS | --runs N | --replay] [TARGET...]" >&2; exit 2; }
number() { case "$1" in '' | *[!0-9]*) usage ;; esac; }

MODE=time SECS=60 RUNS=0
case "${1:-}" in
  --runs) MODE=runs RUNS=${2:-}; number "$RUNS"; shift 2 ;;
  --replay) MODE=replay; shift ;;
  [0-9]*) SECS=$1; number "$SECS"; shift ;;
  -*) usage ;;
esac
ALL_TARGETS=()
for src in fuzz_targets/*.rs; do ALL_TARGETS+=("$(basename "$src" .rs)"); done
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [ -f "fuzz_targets/$t.rs" ] || { echo "unknown target '$t' (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
  grep -q "^path = \"fuzz_targets/$t.rs\"" Cargo.toml ||
    { echo "fuzz_targets/$t.rs has no [[bin]] in fuzz/Cargo.toml (see fuzz/README.md, Adding a target)" >&2; exit 2; }
done
JOBS=${FUZZ_JOBS:-2}
SANITIZER=${FUZZ_SANITIZER:-none}

# cargo-fuzz's flags for `--sanitizer none --debug-assertions`, in its order, so that a
# `cargo fuzz run -s none -a` by hand reuses this build.
triple=$(rustc -vV | sed -n 's/^host: //p')
flags=(-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0)
case "$SANITIZER" in
  none) ;;
  address) export RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0
    flags+=(-Zsanitizer=address) ;;
  *) echo "FUZZ_SANITIZER is none or address" >&2; exit 2 ;;
esac
case "$triple" in *-linux-*) flags+=(-Cllvm-args=-sanitizer-coverage-stack-depth) ;; esac
flags+=(-Cdebug-assertions -Ccodegen-units=1)
bins=()
for t in "${TARGETS[@]}"; do bins+=(--bin "$t"); done
echo "building ${TARGETS[*]} (sanitizer $SANITIZER)"
# --target keeps the flags off build scripts (libfuzzer-sys compiles libFuzzer's C++).
RUSTFLAGS="${flags[*]}" cargo build --release --config 'profile.release.debug="line-tables-only"' \
  --target "$triple" "${bins[@]}" || { echo "build failed" >&2; exit 1; }
bin_dir="target/$triple/release"

mkdir -p logs
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

run_one() {
  local t=$1 work="work/$t" args=(-print_final_stats=1 -max_len=4096 -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/")
  case $MODE in
    time) args+=(-max_total_time="$SECS" -timeout=10) ;;
    # Nothing timed (no reload of the corpus directory; a timeout only for a hang), and
    # no mutation from compared values: they include pointers, which ASLR changes every run.
    runs) work="target/scratch/$t" args+=(-seed=1 -runs="$RUNS" -reload=0 -timeout=120 -use_cmp=0) ;;
    replay) work="target/scratch/$t" args+=(-runs=0) ;;
  esac
  [ "$MODE" = time ] || rm -rf "$work"
  mkdir -p "$work" "artifacts/$t" target/seeds
  # Seeds and past failures as one list in name order (libFuzzer lists a directory in the
  # file system's order, which differs between machines); written without a newline,
  # which would end the last name.
  local seeds="target/seeds/$t"
  find "regressions/$t" "corpus/$t" -type f 2>/dev/null | LC_ALL=C sort | paste -sd, - | tr -d '\n' >"$seeds"
  [ -s "$seeds" ] && args+=(-seed_inputs="@$seeds")
  [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
  # shellcheck disable=SC2086
  "$bin_dir/$t" "${args[@]}" ${FUZZ_ARGS:-} "$work" >"logs/$t.log" 2>&1
  echo $? >"logs/$t.rc"
}

case $MODE in
  time) echo "running ${#TARGETS[@]} target(s) for ${SECS}s each, $JOBS at a time" ;;
  runs) echo "running ${#TARGETS[@]} target(s) for $RUNS executions each from seed 1, $JOBS at a time" ;;
  replay) echo "replaying the corpus and regressions of ${#TARGETS[@]} target(s)" ;;
esac
start=$(date +%s)
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_one "$t" &
done
wait

status=0
printf '\n%-12s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${TARGETS[@]}"; do
  log="logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  found=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" | sort)
  rc=$(cat "logs/$t.rc" 2>/dev/null || echo '?')
  if [ -n "$found" ] || [ "$rc" != 0 ]; then
    result="FAILED (exit $rc) ${found:-see fuzz/$log}"
    status=1
  else
    result="ok"
  fi
  printf '%-12s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${corpus:-?}" "$(echo $result)"
done
echo "$(( $(date +%s) - start ))s"
if [ $status -ne 0 ]; then
  for t in "${TARGETS[@]}"; do
    [ "$(cat "logs/$t.rc" 2>/dev/null)" = 0 ] || { echo "--- fuzz/logs/$t.log"; grep -B2 -A12 -m1 'panicked\|ERROR: libFuzzer' "logs/$t.log"; } >&2
  done
  echo "a target failed: reproduce with fuzz/target/$triple/release/<target> <artifact>, minimise with -minimize_crash=1 -runs=10000 (fuzz/README.md)" >&2
fi
exit $status
