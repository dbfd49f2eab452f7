#!/usr/bin/env bash
# Read replica promotion (Trove's switchover, `promote_to_replica_source`) of PostgreSQL 15 and
# MariaDB 10.11 instances, against the same engine switched over by hand (PostgreSQL: pg_ctl
# stop -m fast + pg_promote(); MariaDB: read_only + MASTER_GTID_WAIT + RESET SLAVE ALL), in one
# run, interleaved, the same write client on both. One command, as root:
#
#   bench/database/promote.sh [--repeats N] [--engines postgresql,mariadb] [--warmup S]
#                             [--tail S] [--flavor NAME] [--volume-gb N]
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing; set
# CONCORD_BUILD_DIR to use another build folder). Prints one table per engine and appends them
# to bench/database/results-promote-<date>.md. Exits 0 whatever the figures say; non-zero only
# when something failed to run.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start promote "$@"
bench_require_bins /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pg_basebackup \
  /usr/lib/postgresql/15/bin/pg_ctl /usr/sbin/mariadbd /usr/bin/mariadb \
  /usr/bin/mariadb-install-db /usr/sbin/runuser
if ! /usr/bin/python3 -c 'import psycopg2, pymysql' 2>/dev/null; then
  echo "promote.sh: python3-psycopg2 or python3-pymysql missing (scripts/install-deps.sh --bench)" >&2
  exit 1
fi
bench_require_db_user
bench_build_binary CONCORD_BIN concord src/cmd/concord
export BENCH_COMMAND="bench/database/promote.sh $*"
bench_exec "$@"
