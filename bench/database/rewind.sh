#!/usr/bin/env bash
# A forked PostgreSQL 15 primary brought back as a standby of its promoted standby: pg_rewind
# (Concord's first choice, pg_rewind_data) against a full pg_basebackup copy (its fallback,
# pg_clone_data), with the flags Concord passes, side by side in one run, interleaved. Debian's
# PostgreSQL tools only, no Concord binary. One command, as root:
#
#   bench/database/rewind.sh [--scale N] [--repeats N] [--load S] [--volume-gb 2] [--wal-keep-size 64MB]
#
# Prints one table and appends it to bench/database/results-rewind-<date>.md. Exits non-zero
# when something failed to run or a rewound or copied standby differs from its primary.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start rewind "$@"
bench_require_bins /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pg_rewind \
  /usr/lib/postgresql/15/bin/pg_basebackup /usr/lib/postgresql/15/bin/pg_ctl /usr/bin/pgbench \
  /usr/sbin/runuser
if ! /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
  echo "rewind.sh: python3-psycopg2 missing (scripts/install-deps.sh --bench)" >&2
  exit 1
fi
bench_require_db_user
export BENCH_COMMAND="bench/database/rewind.sh $*"
bench_exec "$@"
