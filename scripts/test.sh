#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit, integration, end-to-end with
# the real OpenStack clients, Tempest's identity tests, the ASan/UBSan build of the unit and
# integration tests, and each libFuzzer target for a bounded time.
#
#   scripts/test.sh              everything (what .ci/run runs)
#   scripts/test.sh --quick      default build + its tests only
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

step() { printf '\n==== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "dependencies"
scripts/install-deps.sh --test

step "build (default preset)"
scripts/build.sh default

step "tests (default build)"
ctest --preset default -j2 --timeout 1200

if ((quick)); then exit 0; fi

step "build (ASan + UBSan)"
scripts/build.sh asan

step "tests (ASan + UBSan: unit and integration)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --preset asan -j2 --timeout 1200 -LE 'slow|e2e'

step "fuzz (libFuzzer, bounded)"
scripts/build.sh fuzz
tests/fuzz/run.sh build/fuzz "${CONCORD_FUZZ_SECONDS:-60}"

step "all tests passed"
