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

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start backup "$@"
bench_require_bins /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pg_basebackup \
  /usr/bin/pgbench /usr/bin/zstd /usr/sbin/runuser
bench_require_db_user
bench_build_binary CONCORD_BIN concord src/cmd/concord
export BENCH_COMMAND="bench/database/backup.sh $*"
bench_exec "$@"
