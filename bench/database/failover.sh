#!/usr/bin/env bash
# Database failover benchmark: Concord's HA PostgreSQL against Patroni 3.0.2 (etcd 3.4,
# HAProxy 2.6, Debian defaults), asynchronous and synchronous, all in one run, interleaved.
# One command, as root:
#
#   bench/database/failover.sh [--repeats N] [--warmup S] [--tail S] [--only patroni|concord]
#
# Uses $CONCORD_BIN when given, else build/default/src/cmd/concord (built when missing; set
# CONCORD_BUILD_DIR to use another build folder). Prints one table and writes
# bench/database/results-failover-<date>.md. Exits 0 whatever the figures say; non-zero only
# when something failed to run. Concord's rows say "not available" when the server does not
# offer high availability; the Patroni side runs anyway.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/failover.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "failover.sh: PostgreSQL, Patroni and Concord's engines run as concord-db: needs root" >&2
  exit 1
fi
for bin in /usr/lib/postgresql/15/bin/postgres /usr/bin/patroni /usr/bin/etcd /usr/sbin/haproxy \
  /usr/sbin/runuser /usr/bin/ss; do
  if [[ ! -x $bin ]]; then
    echo "failover.sh: $bin missing (scripts/install-deps.sh --bench)" >&2
    exit 1
  fi
done
if ! /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
  echo "failover.sh: python3-psycopg2 missing (scripts/install-deps.sh --bench)" >&2
  exit 1
fi
if ! id -u concord-db >/dev/null 2>&1; then
  echo "failover.sh: the concord-db user is missing (scripts/install-deps.sh creates it)" >&2
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

exec /usr/bin/python3 "$here/failover.py" \
  --results "$here/results-failover-$(date -u +%Y-%m-%d).md" "$@"
