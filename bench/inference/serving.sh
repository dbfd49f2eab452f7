#!/usr/bin/env bash
# Inference serving benchmark (issue 5): serving overhead against the raw OpenCV runtime at
# batch 32 (raw in-process / replica direct / endpoint through the gateway), and the dynamic
# batching gain at 1, 8 and 64 concurrent clients (batching on against off). One command:
#
#   bench/inference/serving.sh [--repeats N] [--duration S] [--concurrency C] [--only ...]
#
# (--help lists every option; see serving.py.) Installs what is missing (wrk,
# dataset-fashion-mnist), builds `concord` and `inference_raw_bench` in $CONCORD_BUILD_DIR
# (default build/default) unless $CONCORD_BIN and $CONCORD_RAW_BENCH_BIN are given, then hands
# over to serving.py, which prints one table and writes it to
# bench/inference/results-serving-<date>.md. Exits 0 whatever the figures say; non-zero only
# when something failed to run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# Logging, package installs, the work dir and its clean-up trap are the compute benchmarks'.
# shellcheck source=bench/compute/lib.sh
source "$repo/bench/compute/lib.sh"

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/serving.py" --help ;;
  esac
done

ensure_packages wrk dataset-fashion-mnist

# Builds the given targets (incrementally) in $CONCORD_BUILD_DIR; prints nothing on success.
build_targets() {
  local dir=${CONCORD_BUILD_DIR:-$repo/build/default}
  if [[ ! -f "$dir/build.ninja" ]]; then
    log "configuring $dir (RelWithDebInfo)"
    timeout 600 cmake -S "$repo" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCONCORD_WERROR=ON >/dev/null
  fi
  log "building $* in $dir"
  local build_log="${TMPDIR:-/tmp}/concord-bench-serving-build.log"
  if ! timeout 3600 cmake --build "$dir" -j 2 --target "$@" >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    log "the build failed (full log: $build_log)"
    exit 1
  fi
}

build_dir=${CONCORD_BUILD_DIR:-$repo/build/default}
targets=()
[[ -n "${CONCORD_BIN:-}" ]] || targets+=(concord)
[[ -n "${CONCORD_RAW_BENCH_BIN:-}" ]] || targets+=(inference_raw_bench)
((${#targets[@]} == 0)) || build_targets "${targets[@]}"
CONCORD_BIN=${CONCORD_BIN:-$build_dir/src/cmd/concord}
CONCORD_RAW_BENCH_BIN=${CONCORD_RAW_BENCH_BIN:-$build_dir/tests/inference/inference_raw_bench}
for bin in "$CONCORD_BIN" "$CONCORD_RAW_BENCH_BIN"; do
  [[ -x "$bin" ]] || { log "$bin is not an executable"; exit 1; }
done
# (inference-replica is dispatched before the main command line, so it is absent from --help.)
if ! "$CONCORD_BIN" inference-replica --help 2>/dev/null | grep -q -- --max-batch-size; then
  log "$CONCORD_BIN has no inference-replica subcommand: build it from a tree with serving"
  exit 1
fi
export CONCORD_BIN CONCORD_RAW_BENCH_BIN

start_work_dir serving
# Replicas started by the all-in-one's agent run in their own sessions, out of reach of the
# process groups lib.sh's clean-up kills. Before that clean-up: stop the harness (it deletes
# its endpoints), kill what is in $work/pgids (the server, so nothing restarts a replica), then
# every replica whose command line names $work, by pid.
stop_strays() {
  if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if [[ -f "$work/pgids" ]]; then
    while read -r pgid; do
      if [[ "$pgid" =~ ^[0-9]+$ ]]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
    done <"$work/pgids"
  fi
  local pid
  for pid in $(pgrep -f -- "inference-replica .*$work/" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap 'rc=$?; stop_strays; (exit "$rc"); cleanup' EXIT
BENCH_COMMAND="bench/inference/serving.sh${*:+ $*}" \
  run_harness "$here/serving.py" --workdir "$work" \
  --results "$here/results-serving-$(date -u +%Y-%m-%d).md" "$@"
