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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/provision.py" --help ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "provision.sh: engines run as the concord-db user, which needs root" >&2
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

exec /usr/bin/python3 "$here/provision.py" \
  --results "$here/results-provision-$(date -u +%Y-%m-%d).md" "$@"
