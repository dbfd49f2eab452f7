#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit, integration, end-to-end with
# the real OpenStack clients, Tempest's identity and compute tests, the ASan/UBSan build of the
# unit and integration tests, and each libFuzzer target for a bounded time (docs/testing.md,
# "What scripts/test.sh runs").
#
#   scripts/test.sh              everything (what .ci/run runs)
#   scripts/test.sh --quick      default build + its tests only
#
# Environment: CONCORD_FUZZ_SECONDS (per libFuzzer target, default 30).
# Ends with the seconds each stage took, also when a stage fails.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

stages=()
stage_name=""
stage_start=0
finish_stage() {
  if [[ -n "$stage_name" ]]; then
    stages+=("$(printf '%6d s  %s' $((SECONDS - stage_start)) "$stage_name")")
  fi
  stage_name=""
}
step() {
  finish_stage
  stage_name="$*"
  stage_start=$SECONDS
  printf '\n==== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"
}
# After a failed test stage, the lines of each failed test's output that say why, printed last:
# CI reports only the end of this script's output, where ctest's own list gives just the names.
tests_dir=""
why_failed() {  # BUILD_DIR
  local log="$1/Testing/Temporary/LastTest.log" failed="$1/Testing/Temporary/LastTestsFailed.log"
  [[ -f "$log" && -f "$failed" ]] || return 0
  printf '\n==== why they failed (telling lines of each failed test'"'"'s output)\n'
  local name
  while IFS=: read -r _ name; do
    printf -- '-- %s\n' "$name"
    awk -v start="\"$name\" start time:" '
      index($0, start) == 1 { on = 1; next }
      on && $0 == "<end of output>" { on = 0 }
      on' "$log" |
      grep -E 'FAIL|Failure|[Ee]rror|REGRESSION|Traceback|Exception|Expected|Which is|timed out|died|\((fail|not run)\)' |
      tail -n 12 | cut -c1-300 || true
  done <"$failed"
}
summary() {
  local status=$?
  finish_stage
  printf '\n==== stage times (%s)\n' "$( ((status == 0)) && echo passed || echo "FAILED: $status")"
  printf '%s\n' "${stages[@]}"
  printf '%6d s  total\n' "$SECONDS"
  if ((status != 0)) && [[ -n "$tests_dir" ]]; then why_failed "$tests_dir"; fi
}
trap summary EXIT

step "dependencies"
scripts/install-deps.sh --test

step "build (default preset)"
scripts/build.sh default

step "tests (default build)"
tests_dir=build/default
ctest --preset default -j2 --timeout 1200

if ((quick)); then exit 0; fi

step "build (ASan + UBSan)"
tests_dir=""
scripts/build.sh asan

step "tests (ASan + UBSan: unit and integration)"
tests_dir=build/asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --preset asan -j2 --timeout 1200 -LE 'slow|e2e'

step "fuzz (libFuzzer, bounded)"
tests_dir=""
scripts/build.sh fuzz
tests/fuzz/run.sh build/fuzz "${CONCORD_FUZZ_SECONDS:-30}" 2

finish_stage
printf '\n==== all tests passed (%s)\n' "$(date -u +%H:%M:%S)"
