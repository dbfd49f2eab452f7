#!/usr/bin/env bash
# Endpoint proxy benchmark: pgbench through the Concord proxy (session and transaction mode)
# against direct connections to PostgreSQL 15 and PgBouncer 1.18 in transaction mode, all in
# one run, interleaved. One command, as root:
#
#   bench/database/proxy.sh [--repeats N] [--duration S] [--clients 8,64,256] [--quick]
#
# Uses $CONCORD_DB_PROXY when given, else build/default/src/database/proxy/concord-db-proxy
# (built when missing). Prints one table and writes bench/database/results-proxy-<date>.md.
# Exits 0 whatever the figures say; non-zero only when something failed to run.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start proxy "$@"
bench_require_bins /usr/lib/postgresql/15/bin/postgres /usr/sbin/pgbouncer /usr/bin/pgbench
bench_build_binary CONCORD_DB_PROXY concord-db-proxy src/database/proxy/concord-db-proxy
bench_exec "$@"
