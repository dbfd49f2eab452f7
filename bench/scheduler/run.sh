#!/usr/bin/env bash
# Scheduler benchmark: 10,000 servers of mixed flavors onto 1,000 simulated hosts with
# Concord's scheduler (pack, spread, and the stateless place() the Nova API calls) side by side
# with a first-fit and a random-placement baseline, same inputs, same run. One command:
#
#   bench/scheduler/run.sh [--repeats N] [--servers N] [--hosts N] [--place-servers N] [--seed N]
#
# Builds bench/scheduler on its own (RelWithDebInfo, in build/scheduler-bench, from the
# scheduler's and base's sources only), runs it, prints one table and writes it to
# bench/scheduler/results-<date>.md. Exits 0 whatever the figures say; non-zero only when
# something failed to build or run. A pure computation: no servers, ports or temp dirs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${SCHEDULER_BENCH_BUILD:-$repo/build/scheduler-bench}

for arg in "$@"; do
  if [[ "$arg" == --help || "$arg" == -h ]]; then
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
  fi
done

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

log "building scheduler_bench (RelWithDebInfo) in $build"
timeout 1800 cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
timeout 1800 cmake --build "$build" -j 2 --target scheduler_bench >/dev/null

out="$here/results-$(date -u +%Y-%m-%d).md"
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- src/compute/scheduler bench/scheduler 2>/dev/null |
  grep -q . && echo " + uncommitted scheduler changes" || true)
{
  echo "Scheduler benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), main at $commit$dirty"
  echo "Command: bench/scheduler/run.sh $*"
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  timeout 1800 "$build/scheduler_bench" "$@"
  echo
  echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
log "written to $out"
