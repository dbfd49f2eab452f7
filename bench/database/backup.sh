#!/usr/bin/env bash
# Managed-database backup and restore throughput: Concord's PostgreSQL backups (POST /backups to
# COMPLETED) and restores (POST /instances with restorePoint to ACTIVE) against plain
# pg_basebackup of the same data and a hand restore of its tars, in one run, interleaved.
# One command, as root:
#
#   bench/database/backup.sh [--scale N] [--random-mb N] [--repeats N] [--flavor NAME]
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing; set
# CONCORD_BUILD_DIR to use another build folder). Prints one table and appends it to
# bench/database/results-backup-<date>.md. Exits 0 whatever the figures say; non-zero only when
# something failed to run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/backup.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "backup.sh: engines run as the concord-db user, which needs root" >&2
  exit 1
fi
for bin in /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pg_basebackup \
  /usr/bin/pgbench /usr/bin/zstd /usr/sbin/runuser; do
  if [[ ! -x $bin ]]; then
    echo "backup.sh: $bin missing (scripts/install-deps.sh)" >&2
    exit 1
  fi
done
if ! id -u concord-db >/dev/null 2>&1; then
  echo "backup.sh: the concord-db user is missing (scripts/install-deps.sh creates it)" >&2
  exit 1
fi

if [[ -z "${CONCORD_BIN:-}" ]]; then
  dir=${CONCORD_BUILD_DIR:-$repo/build/default}
  if [[ ! -x "$dir/src/cmd/concord" ]]; then
    [[ -f "$dir/build.ninja" ]] || cmake -S "$repo" -B "$dir" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONCORD_WERROR=ON >/dev/null
    cmake --build "$dir" -j 2 --target concord >/dev/null
  fi
  export CONCORD_BIN=$dir/src/cmd/concord
fi

export BENCH_COMMAND="bench/database/backup.sh $*"
exec /usr/bin/python3 "$here/backup.py" \
  --results "$here/results-backup-$(date -u +%Y-%m-%d).md" "$@"
