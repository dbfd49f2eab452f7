#!/usr/bin/env bash
# Managed-database provisioning benchmark: create-to-ACTIVE of Trove instances (PostgreSQL 15,
# MariaDB 10.11) through the real `concord all-in-one`, side by side in one run with the raw
# engine bootstrap done by hand (initdb + postgres until pg_isready; mariadb-install-db +
# mariadbd until `mariadb -e 'select 1'`). One command, as root:
#
#   bench/database/provision.sh [--repeats N] [--concurrency N] [--only postgresql|mariadb]
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing).
# Prints one table and writes it to bench/database/results-provision-<date>.md. Exits 0
# whatever the figures say; non-zero only when something failed to run.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start provision "$@"
bench_build_binary CONCORD_BIN concord src/cmd/concord
bench_exec "$@"
