# shellcheck shell=bash
# Shared by bench/compute/launch.sh and bench/compute/api_scale.sh (sourced, not run).
# Expects $here and $repo. Provides: log, ensure_packages, ensure_concord, start_work_dir (makes
# $work and installs the clean-up trap), run_harness.

export PYTHONDONTWRITEBYTECODE=1

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ensure_packages pkg...: installs (from Debian's archive) whichever of them is missing.
ensure_packages() {
  local missing=() p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  local sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 1200 "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"
}

# Sets CONCORD_BIN. Given explicitly, it is used as is; otherwise the concord target is built
# (incrementally: a no-op when up to date) in $CONCORD_BUILD_DIR, default build/default (the
# `default` preset, RelWithDebInfo), so a stale binary from before the compute API is never
# measured by mistake.
ensure_concord() {
  if [[ -n "${CONCORD_BIN:-}" ]]; then
    [[ -x "$CONCORD_BIN" ]] || { log "CONCORD_BIN=$CONCORD_BIN is not an executable"; exit 1; }
  else
    local dir=${CONCORD_BUILD_DIR:-$repo/build/default}
    if [[ ! -f "$dir/build.ninja" ]]; then
      log "configuring $dir (RelWithDebInfo)"
      timeout 600 cmake -S "$repo" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCONCORD_WERROR=ON >/dev/null
    fi
    log "building concord in $dir"
    if ! timeout 3600 cmake --build "$dir" -j 2 --target concord >"${TMPDIR:-/tmp}/concord-bench-build.log" 2>&1; then
      tail -n 30 "${TMPDIR:-/tmp}/concord-bench-build.log" >&2
      log "the build failed (full log: ${TMPDIR:-/tmp}/concord-bench-build.log)"
      exit 1
    fi
    CONCORD_BIN=$dir/src/cmd/concord
  fi
  if ! "$CONCORD_BIN" --help 2>/dev/null | grep -q agent-credential; then
    log "$CONCORD_BIN has no compute (no agent-credential subcommand): build it from a tree with compute"
    exit 1
  fi
  export CONCORD_BIN
}

# Everything the harness starts runs in its own session, listed in $work/pgids; the trap kills
# whatever is still alive there, force-removes runc containers and mounts left under $work
# (tests/integration/workloads.py's reaper), and removes $work, even when the harness itself
# was killed.
harness_pid=
start_work_dir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/concord-bench-$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$harness_pid" 2>/dev/null || true
  fi
  if [[ -f "$work/pgids" ]]; then
    while read -r pgid; do
      if [[ "$pgid" =~ ^[0-9]+$ ]]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
    done <"$work/pgids"
  fi
  if [[ -d "$work" ]]; then
    timeout 300 /usr/bin/python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
import workloads
workloads.reap(sys.argv[2])
left = workloads.leftovers(sys.argv[2])
if left:
    print("[bench] still present after reaping:", left[:10], file=sys.stderr)
' "$repo/tests/integration" "$work" || log "warning: reaping $work failed"
    if [[ -n "${CONCORD_KEEP_TMP:-}" ]]; then
      log "kept $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}

# run_harness script.py args...: runs in the background so that the traps fire while it runs.
run_harness() {
  /usr/bin/python3 "$@" &
  harness_pid=$!
  set +e
  wait "$harness_pid"
  local rc=$?
  set -e
  harness_pid=
  return "$rc"
}
