#!/usr/bin/env bash
# Split-inference benchmark (issue 5): end-to-end latency of the planner's choice against
# device-only, cloud-only and every fixed split under three emulated conditions (slow link,
# fast link, overloaded server), repeated, min / median / max and ratios. One command:
#
#   bench/inference/split.sh [--repeats N] [--count N] [--count-slow N] [--only slow,fast,...]
#
# (--help lists every option; see split_bench.py.) Builds concord-device and
# concord in $CONCORD_BUILD_DIR (default build/default) unless $CONCORD_DEVICE_BIN
# and $CONCORD_BIN are given, then writes the table to
# bench/inference/results-split-<date>.md. Needs root (network namespaces, tc, cgroups).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/split_bench.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "split.sh: network namespaces, tc and cgroups need root" >&2
  exit 1
fi

device=${CONCORD_DEVICE_BIN:-}
server=${CONCORD_BIN:-}
if [[ -z $device || -z $server ]]; then
  build=${CONCORD_BUILD_DIR:-$repo/build/default}
  if [[ ! -f $build/build.ninja ]]; then
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build" -j2 --target concord-device concord >/dev/null
  device=$(find "$build" -type f -name concord-device -perm -u+x | head -n1)
  server=$build/src/cmd/concord
fi

exec /usr/bin/python3 "$here/split_bench.py" --device-bin "$device" --server-bin "$server" \
  --results "$here/results-split-$(date -u +%Y-%m-%d).md" --command "bench/inference/split.sh${*:+ $*}" "$@"
