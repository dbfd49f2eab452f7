#!/usr/bin/env bash
# Configures (once) and builds a CMake preset: scripts/build.sh <preset> [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
shift || true
if [[ ! -f build/$preset/build.ninja ]]; then
  cmake --preset "$preset" >/dev/null
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "build/$preset" "${targets[@]}"
