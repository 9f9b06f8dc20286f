#!/usr/bin/env bash
# scripts/test.sh — the CI job: set up, build, run the test suite in a
# Release build, then again in an AddressSanitizer + UBSan Debug build.
#
# Environment:
#   QUALM_BUILD_DIR       Release build folder (default: build)
#   QUALM_ASAN_DIR        sanitizer build folder (default: build-asan)
#   QUALM_TEST_ASAN=0     skip the sanitizer pass
#   QUALM_ASAN_ALL=1      also run tests labelled "slow" under the sanitizers
#   QUALM_TEST_JOBS       parallel tests (default: 2)
#   QUALM_TEST_REGEX      only run tests matching this ctest -R pattern
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${QUALM_BUILD_DIR:-build}
ASAN_DIR=${QUALM_ASAN_DIR:-build-asan}
JOBS=${QUALM_TEST_JOBS:-2}
NPROC=$(nproc 2>/dev/null || echo 2)
T0=$(date +%s)
STEP="setup"
say() { printf '[test %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
trap 'rc=$?; [ $rc -eq 0 ] || echo "test.sh: FAILED during: $STEP (exit $rc)" >&2' EXIT

FILTER=()
[ -n "${QUALM_TEST_REGEX:-}" ] && FILTER=(-R "$QUALM_TEST_REGEX")

# setup.sh installs what is missing and builds $BUILD_DIR (Release).
QUALM_BUILD_DIR=$BUILD_DIR bash scripts/setup.sh

STEP="ctest ($BUILD_DIR)"
say "ctest: $BUILD_DIR (Release)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$JOBS" "${FILTER[@]}"

if [ "${QUALM_TEST_ASAN:-1}" = 0 ]; then
  say "sanitizer pass skipped (QUALM_TEST_ASAN=0)"
  say "all tests passed"
  exit 0
fi

STEP="sanitizer build ($ASAN_DIR)"
say "sanitizer build: $ASAN_DIR (Debug, ASan + UBSan), -j$NPROC"
mkdir -p "$ASAN_DIR"
cmake -S . -B "$ASAN_DIR" -DQLM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >"$ASAN_DIR/configure.log" 2>&1 \
  || { tail -n 30 "$ASAN_DIR/configure.log" >&2; exit 1; }
cmake --build "$ASAN_DIR" -j"$NPROC" >"$ASAN_DIR/build.log" 2>&1 \
  || { tail -n 40 "$ASAN_DIR/build.log" >&2; echo "full log: $ASAN_DIR/build.log" >&2; exit 1; }

STEP="ctest ($ASAN_DIR)"
LABELS=(-LE slow) # sanitizers make tests ~5x slower; "slow" ones only run in Release
[ "${QUALM_ASAN_ALL:-0}" = 1 ] && LABELS=()
say "ctest: $ASAN_DIR (sanitizers${LABELS:+, excluding label slow})"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ctest --test-dir "$ASAN_DIR" --output-on-failure -j"$JOBS" "${LABELS[@]}" "${FILTER[@]}"

say "all tests passed"
