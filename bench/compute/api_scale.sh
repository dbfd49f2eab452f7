#!/usr/bin/env bash
# Compute API scale benchmark: GET /compute/v2.1/servers/detail with 10,000 servers, and the
# server's resident memory, on SIMULATED hosts (no workload runs; this measures the API and
# the store, not the drivers). One command:
#
#   bench/compute/api_scale.sh [--servers N] [--hosts N] [--repeats N] [--duration S] ...
#
# (--help lists every option.) Installs what is missing, builds Concord unless $CONCORD_BIN is
# given (in $CONCORD_BUILD_DIR, default build/default), then hands over to api_scale.py, which
# starts `concord all-in-one --agent.enabled=false` and sim_agent.py, creates the servers,
# drives the GETs with wrk, prints one table and writes it to
# bench/compute/results-api-scale-<date>.md. Exits 0 whatever the figures say; non-zero only
# when something failed to run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=bench/compute/lib.sh
source "$here/lib.sh"

for arg in "$@"; do
  case "$arg" in
    --help | -h) exec /usr/bin/python3 "$here/api_scale.py" --help ;;
  esac
done

timeout 1200 "$repo/scripts/install-deps.sh" --bench
ensure_packages wrk
ensure_concord

start_work_dir api-scale
BENCH_COMMAND="bench/compute/api_scale.sh${*:+ $*}" \
  run_harness "$here/api_scale.py" --workdir "$work" \
  --results "$here/results-api-scale-$(date -u +%Y-%m-%d).md" "$@"
