#!/usr/bin/env bash
# MariaDB read replica create-to-ACTIVE: a replica seeded from the primary's backup (restore +
# archived binlogs, then streaming), one seeded from a backup the server takes for it (the
# primary had none), and one copied over the network (mariadb-dump of the running primary), the
# same primary with the same data, in one run, interleaved. One command, as root:
#
#   bench/database/replica.sh [--mb N] [--repeats N] [--flavor NAME] [--volume-gb N]
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing; set
# CONCORD_BUILD_DIR to use another build folder). Prints one table and appends it to
# bench/database/results-replica-<date>.md. Exits 0 whatever the figures say; non-zero only when
# something failed to run.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start replica "$@"
bench_require_bins /usr/sbin/mariadbd /usr/bin/mariadb /usr/bin/mariadb-backup \
  /usr/bin/mariadb-dump /usr/bin/mariadb-binlog /usr/sbin/runuser
bench_require_db_user
bench_build_binary CONCORD_BIN concord src/cmd/concord
export BENCH_COMMAND="bench/database/replica.sh $*"
bench_exec "$@"
