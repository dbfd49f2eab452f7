#!/usr/bin/env bash
# Identity benchmark: Concord against the real Keystone 22 from Debian, side by side in one
# run on this machine. One command:
#
#   bench/identity/run.sh [--repeats N] [--duration S] [--only keystone|concord|both] ...
#
# (bench/identity/run.sh --help lists every option.) Installs what is missing, builds
# Concord if $CONCORD_BIN is absent, then hands over to bench.py, which starts both
# servers, drives them with wrk, prints one table and writes it to
# bench/identity/results-<date>.md. Exits 0 whatever the figures say; non-zero only when
# something failed to run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CONCORD_BIN=${CONCORD_BIN:-$repo/build/default/src/cmd/concord}

only=both
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --help | -h) exec /usr/bin/python3 "$here/bench.py" --help ;;
    --only=*) only=${!i#--only=} ;;
    --only) j=$((i + 1)); only=${!j:-both} ;;
  esac
done

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# Bounded: package installation and a cold build each get a ceiling, so a stuck apt lock
# or a hung compiler ends the bench instead of hanging it.
timeout 1200 "$repo/scripts/install-deps.sh" --bench

if [[ "$only" != keystone && ! -x "$CONCORD_BIN" ]]; then
  log "no Concord binary at $CONCORD_BIN: building it (RelWithDebInfo, preset default)"
  (cd "$repo" && timeout 3600 cmake --preset default >/dev/null &&
    timeout 3600 cmake --build --preset default -j 2 --target concord)
  if [[ ! -x "$CONCORD_BIN" ]]; then
    log "the build produced no $CONCORD_BIN"
    exit 1
  fi
fi

# Everything the harness starts runs in its own process group, listed in $work/pgids; this
# trap kills whatever is still alive there and removes the scratch dir, even when the
# harness itself was killed.
work=$(mktemp -d "${TMPDIR:-/tmp}/concord-bench-identity.XXXXXX")
harness_pid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$harness_pid" 2>/dev/null || true
  fi
  if [[ -f "$work/pgids" ]]; then
    while read -r pgid; do
      [[ "$pgid" =~ ^[0-9]+$ ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done <"$work/pgids"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Debian's Python: keystone-manage and uWSGI's plugin live there, and the harness uses only
# its standard library. Run in the background so the traps above fire while it runs.
BENCH_COMMAND="bench/identity/run.sh${*:+ $*}" \
  /usr/bin/python3 "$here/bench.py" --workdir "$work" --concord-bin "$CONCORD_BIN" "$@" &
harness_pid=$!
set +e
wait "$harness_pid"
rc=$?
set -e
harness_pid=
exit "$rc"
