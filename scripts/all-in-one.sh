#!/usr/bin/env bash
# Installs what is missing, builds, and starts an all-in-one Concord on 127.0.0.1 with its
# SQLite store under ./data (override with CONCORD_DATA_DIR, the port with CONCORD_PORT).
# It prints where the admin credentials are: `source data/openrc && openstack token issue`.
# Extra arguments go to `concord all-in-one` (e.g. --log.level=debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh default concord
exec build/default/src/cmd/concord all-in-one \
  --data_dir="${CONCORD_DATA_DIR:-$PWD/data}" --server.port="${CONCORD_PORT:-5000}" "$@"
