#!/usr/bin/env bash
# Compute launch benchmark: create-to-ACTIVE of container servers through Concord (all-in-one,
# its in-process agent running runc), side by side in one run with plain `runc run --detach` of
# the same busybox bundle. One command:
#
#   bench/compute/launch.sh [--count N] [--rounds N] [--concurrency N] [--poll-ms MS] ...
#
# (--help lists every option.) Installs what is missing, builds Concord unless $CONCORD_BIN is
# given (in $CONCORD_BUILD_DIR, default build/default), builds the busybox fixture with
# tests/fixtures/build-images.sh (into $CONCORD_FIXTURES, default /tmp/concord-fixtures), then
# hands over to launch.py, which prints one table and writes it to
# bench/compute/results-launch-<date>.md. Exits 0 whatever the figures say; non-zero only when
# something failed to run. Needs root (runc).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=bench/compute/lib.sh
source "$here/lib.sh"

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/launch.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  log "runc needs root: run as root"
  exit 1
fi

timeout 1200 "$repo/scripts/install-deps.sh" --bench
# runc for the workloads; the rest is what tests/fixtures/build-images.sh needs.
ensure_packages runc busybox-static dosfstools mtools syslinux qemu-utils cpio
ensure_concord

fixtures=${CONCORD_FIXTURES:-/tmp/concord-fixtures}
timeout 600 "$repo/tests/fixtures/build-images.sh" "$fixtures" >/dev/null

start_work_dir launch
BENCH_COMMAND="bench/compute/launch.sh${*:+ $*}" \
  run_harness "$here/launch.py" --workdir "$work" --fixtures "$fixtures" \
  --results "$here/results-launch-$(date -u +%Y-%m-%d).md" "$@"
