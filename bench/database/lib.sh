# Shared by the database benchmarks' one-command scripts (provision.sh, proxy.sh, failover.sh,
# backup.sh); sourced, not run. Each script names its Python driver, its checks and the binary
# it needs; this file does the rest the same way for all of them.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_start failover "$@"        # --help passes through to failover.py; then needs root
#   bench_require_bins /usr/bin/patroni ...
#   bench_require_db_user
#   bench_build_binary CONCORD_BIN concord src/cmd/concord
#   bench_exec "$@"                  # failover.py --results results-failover-<date>.md "$@"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

bench_start() {
  bench_name=$1
  shift
  for arg in "$@"; do
    case "$arg" in
      --help | -h) exec /usr/bin/python3 "$here/$bench_name.py" --help ;;
    esac
  done
  if [[ $(id -u) -ne 0 ]]; then
    echo "$bench_name.sh: the engines run as the concord-db user, which needs root" >&2
    exit 1
  fi
}

bench_require_bins() {
  for bin in "$@"; do
    if [[ ! -x $bin ]]; then
      echo "$bench_name.sh: $bin missing (scripts/install-deps.sh --bench)" >&2
      exit 1
    fi
  done
}

bench_require_db_user() {
  if ! id -u concord-db >/dev/null 2>&1; then
    echo "$bench_name.sh: the concord-db user is missing (scripts/install-deps.sh creates it)" >&2
    exit 1
  fi
}

# bench_build_binary VAR TARGET PATH: unless $VAR is set, builds TARGET in $CONCORD_BUILD_DIR
# (default build/default) when PATH is missing there, and exports VAR.
bench_build_binary() {
  local var=$1 target=$2 path=$3
  if [[ -z "${!var:-}" ]]; then
    local dir=${CONCORD_BUILD_DIR:-$repo/build/default}
    if [[ ! -x "$dir/$path" ]]; then
      [[ -f "$dir/build.ninja" ]] || cmake -S "$repo" -B "$dir" -G Ninja \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONCORD_WERROR=ON >/dev/null
      cmake --build "$dir" -j 2 --target "$target" >/dev/null
    fi
    export "$var=$dir/$path"
  fi
}

bench_exec() {
  exec /usr/bin/python3 "$here/$bench_name.py" \
    --results "$here/results-$bench_name-$(date -u +%Y-%m-%d).md" "$@"
}
