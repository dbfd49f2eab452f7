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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/proxy.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "proxy.sh: PostgreSQL and PgBouncer run as the concord-db user, which needs root" >&2
  exit 1
fi
for bin in /usr/lib/postgresql/15/bin/postgres /usr/sbin/pgbouncer /usr/bin/pgbench; do
  if [[ ! -x $bin ]]; then
    echo "proxy.sh: $bin missing (scripts/install-deps.sh --bench)" >&2
    exit 1
  fi
done

if [[ -z "${CONCORD_DB_PROXY:-}" ]]; then
  dir=${CONCORD_BUILD_DIR:-$repo/build/default}
  if [[ ! -x "$dir/src/database/proxy/concord-db-proxy" ]]; then
    [[ -f "$dir/build.ninja" ]] || cmake -S "$repo" -B "$dir" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONCORD_WERROR=ON >/dev/null
    cmake --build "$dir" -j 2 --target concord-db-proxy >/dev/null
  fi
  export CONCORD_DB_PROXY=$dir/src/database/proxy/concord-db-proxy
fi

exec /usr/bin/python3 "$here/proxy.py" \
  --results "$here/results-proxy-$(date -u +%Y-%m-%d).md" "$@"
