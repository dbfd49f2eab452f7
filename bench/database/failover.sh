#!/usr/bin/env bash
# Database failover benchmark: Concord's HA PostgreSQL against Patroni 3.0.2 (etcd 3.4,
# HAProxy 2.6, Debian defaults), asynchronous and synchronous, all in one run, interleaved.
# One command, as root:
#
#   bench/database/failover.sh [--repeats N] [--warmup S] [--tail S] [--only patroni|concord]
#                              [--concord-engines postgresql,mariadb]
#                              [--concord-scenarios engine,host,paused[,standby-silent]]
#
# standby-silent (PostgreSQL, not in the default set): no failover, the primary's WAL senders
# paused, so commits wait until the server stops waiting for the synchronous standby.
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing; set
# CONCORD_BUILD_DIR to use another build folder). Prints one table and writes
# bench/database/results-failover-<date>.md. Exits 0 whatever the figures say; non-zero only
# when something failed to run. Concord's rows say "not available" when the server does not
# offer high availability; the Patroni side runs anyway.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start failover "$@"
bench_require_bins /usr/lib/postgresql/15/bin/postgres /usr/bin/patroni /usr/bin/etcd \
  /usr/sbin/haproxy /usr/sbin/runuser /usr/bin/ss
if ! /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
  echo "failover.sh: python3-psycopg2 missing (scripts/install-deps.sh --bench)" >&2
  exit 1
fi
bench_require_db_user
bench_build_binary CONCORD_BIN concord src/cmd/concord
bench_exec "$@"
