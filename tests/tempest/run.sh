#!/bin/bash
# Runs Tempest's Identity v3 API tests against a Concord all-in-one and compares the result
# with tests/tempest/expected-pass.txt (see docs/testing.md).
#
#   tests/tempest/run.sh                 start $CONCORD_BIN in a temp dir, run, compare
#   CONCORD_URL=http://127.0.0.1:5000 CONCORD_ADMIN_PASSWORD=pw tests/tempest/run.sh
#                                        use a server that is already running
#   UPDATE_EXPECTED=1 tests/tempest/run.sh
#                                        also rewrite expected-pass.txt with what passed
#
# Environment: CONCORD_BIN (default build/default/src/cmd/concord), CONCORD_ARGS (extra server
# flags, e.g. --identity.lockout_window=5s), TEMPEST_CONCURRENCY
# (default 2), TEMPEST_REGEX, TEMPEST_TIMEOUT (seconds, default 1200), TEMPEST_CONF_TEMPLATE
# (default tempest.conf.in next to this script), KEEP_TEMPEST_DIR=1 to keep the workspace,
# server log and subunit stream, TEMPEST_SERVER_LOG_LEVEL (the server's --log.level, default
# warn; info or debug for a post-mortem).
# Exit status: 0 when every expected test passed, 1 when one did not, 2 on harness errors.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY=/usr/bin/python3
TEMPEST=/usr/bin/tempest
STESTR=/usr/bin/stestr
CONCORD_BIN="${CONCORD_BIN:-$ROOT/build/default/src/cmd/concord}"
# Profiles: identity (Identity v3) and compute (Compute and Image v2 without Neutron, Cinder or
# Swift; run.sh uploads a public busybox container image first and fills image_ref with it) and
# database (trove-tempest-plugin's scenario tests on real PostgreSQL and MariaDB engines).
PROFILE="${TEMPEST_PROFILE:-identity}"
case "$PROFILE" in
  identity)
    DEFAULT_REGEX='^tempest\.api\.identity\.v3|^tempest\.api\.identity\.admin\.v3'
    EXPECTED="$HERE/expected-pass.txt"
    TEMPLATE="$HERE/tempest.conf.in"
    ;;
  compute)
    DEFAULT_REGEX='^tempest\.api\.(compute|image\.v2)\.'
    EXPECTED="$HERE/expected-pass-compute.txt"
    TEMPLATE="$HERE/tempest-compute.conf.in"
    ;;
  database)
    # trove-tempest-plugin's scenario tests on real PostgreSQL / MariaDB engines (Debian's
    # trove-tempest-plugin); exclusions: docs/testing.md, "Tempest database".
    DEFAULT_REGEX='^trove_tempest_plugin\.tests\.scenario\.'
    EXPECTED="$HERE/expected-pass-database.txt"
    TEMPLATE="$HERE/tempest-database.conf.in"
    ;;
  *) echo "tempest/run.sh: unknown TEMPEST_PROFILE $PROFILE" >&2; exit 2 ;;
esac
REGEX="${TEMPEST_REGEX:-$DEFAULT_REGEX}"
CONCURRENCY="${TEMPEST_CONCURRENCY:-2}"
RUN_TIMEOUT="${TEMPEST_TIMEOUT:-1200}"

WORK="$(mktemp -d /tmp/concord-tempest-XXXXXX)"
SERVER_PID=""
DB_ROOT=""

# Database engines run detached as concord-db under the agent's database root (outside the data
# folder, see src/compute/driver/database_driver.cc), so they outlive the server: stop what is
# left there (instances a failing test did not delete) and remove the root.
# shellcheck disable=SC2317  # called through cleanup (the EXIT trap)
reap_database_engines() {  # ROOT
  local root="$1" pids=() pid
  [[ "$root" == /var/lib/concord/database/* ]] || return 0
  for pid in $(pgrep -u concord-db 2>/dev/null); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$root/" && pids+=("$pid")
  done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do  # 10 s
      local left=0
      for pid in "${pids[@]}"; do alive "$pid" && left=1; done
      ((left)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  # Each instance's volume is mounted under the root (<root>/<id>/v): rm stops there.
  local point
  while read -r point; do
    umount -l "$point" 2>/dev/null || true
  done < <(awk -v r="$root/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo)
  rm -rf "$root"
}

# True while the process exists and is not a zombie (kill -0 succeeds on our own zombies).
alive() {
  [[ -r "/proc/$1/stat" ]] && [[ "$(cut -d')' -f2 "/proc/$1/stat" | cut -d' ' -f2)" != Z ]]
}

# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    (sleep 20; kill -KILL -- "-$SERVER_PID" 2>/dev/null) &
    local watchdog=$!
    wait "$SERVER_PID" 2>/dev/null || true
    kill "$watchdog" 2>/dev/null || true
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    # Workloads outlive the server by design (agents adopt them); remove what the run left.
    "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import workloads; workloads.reap(sys.argv[2])' \
      "$ROOT/tests/integration" "$WORK/data" 2>/dev/null || true
    if [[ -n "$DB_ROOT" ]]; then reap_database_engines "$DB_ROOT"; fi
  fi
  if [[ "${KEEP_TEMPEST_DIR:-}" == 1 ]]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

die() {
  echo "tempest/run.sh: $*" >&2
  exit 2
}

openrc_value() {  # FILE KEY
  "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import concord_launcher as c
print(c.parse_openrc(open(sys.argv[2]).read()).get(sys.argv[3], ""))' \
    "$ROOT/tests/integration" "$1" "$2"
}

if [[ -n "${CONCORD_URL:-}" ]]; then
  URL="${CONCORD_URL%/}"
  AUTH_URL="${CONCORD_AUTH_URL:-$URL/identity/v3}"
  ADMIN_PASSWORD="${CONCORD_ADMIN_PASSWORD:?CONCORD_URL needs CONCORD_ADMIN_PASSWORD}"
else
  [[ -x "$CONCORD_BIN" ]] || die "no concord binary at $CONCORD_BIN (set CONCORD_BIN)"
  DATA="$WORK/data"
  mkdir -p "$DATA"
  PROFILE_ARGS=()
  if [[ "$PROFILE" == database ]]; then
    # A known agent state folder names the engines' root (/var/lib/concord/database/<FNV-1a
    # 64 of that path>, database_driver.cc) for the cleanup; a /24 of its own, outside the
    # default 127.77.0.0/16, keeps its engines off the addresses other runs on this machine use.
    PROFILE_ARGS=(--agent.state_dir="$DATA/agent"
      --database.address_pool="127.$((100 + RANDOM % 100)).$((RANDOM % 256)).0/24")
    DB_ROOT="/var/lib/concord/database/$("$PY" -c 'import sys
h = 14695981039346656037
for c in sys.argv[1].encode():
    h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
print("%016x" % h)' "$DATA/agent")"
  fi
  # setsid: the server gets its own process group, so cleanup can kill all of it.
  # shellcheck disable=SC2086  # CONCORD_ARGS is a list of extra flags
  setsid "$CONCORD_BIN" all-in-one --data_dir="$DATA" --server.port=0 \
    --log.level="${TEMPEST_SERVER_LOG_LEVEL:-warn}" \
    "${PROFILE_ARGS[@]}" ${CONCORD_ARGS:-} >"$WORK/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  for _ in $(seq 1 600); do  # 60 s
    [[ -f "$DATA/server.json" ]] && break
    alive "$SERVER_PID" || { tail -20 "$WORK/server.log" >&2; die "concord exited"; }
    sleep 0.1
  done
  if [[ ! -f "$DATA/server.json" ]]; then
    tail -20 "$WORK/server.log" >&2
    die "concord not ready in 60 s"
  fi
  AUTH_URL="$(openrc_value "$DATA/openrc" OS_AUTH_URL)"
  ADMIN_PASSWORD="$(openrc_value "$DATA/openrc" OS_PASSWORD)"
  [[ -n "$AUTH_URL" && -n "$ADMIN_PASSWORD" ]] || die "no OS_AUTH_URL/OS_PASSWORD in $DATA/openrc"
fi
echo "tempest: target $AUTH_URL"

if [[ "$PROFILE" == database ]]; then
  # The plugin's MySQL classes (backups, replication, actions) need a datastore named "mysql".
  # The admin offers it as MariaDB 10.11 with the real CLI's management call, as an operator
  # would (docs/design/database.md, "Datastore versions (admin)"); a target that has it already
  # answers "already exists".
  if ! out=$(env -u OS_CLOUD OS_AUTH_URL="$AUTH_URL" OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASSWORD"     OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default     OS_IDENTITY_API_VERSION=3 timeout 120 openstack datastore version create 10.11 mysql mariadb ""     --active --default --version-number 10.11 2>&1); then
    [[ "$out" == *"already exists"* ]] || die "could not add the mysql datastore: $out"
  fi
fi

cd "$WORK"
timeout 120 "$TEMPEST" init --workspace-path "$WORK/workspace.yaml" "$WORK/ws" >/dev/null \
  || die "tempest init failed"
ESCAPED_PW="$(printf '%s' "$ADMIN_PASSWORD" | sed -e 's/[\/&|]/\\&/g')"
IMAGE_REF="" IMAGE_REF_ALT=""
if [[ "$PROFILE" == compute ]]; then
  read -r IMAGE_REF IMAGE_REF_ALT < <("$PY" "$HERE/upload_images.py" "$AUTH_URL" "$ADMIN_PASSWORD") \
    || die "could not upload the test images"
  [[ -n "$IMAGE_REF" && -n "$IMAGE_REF_ALT" ]] || die "no image ids from upload_images.py"
fi
sed -e "s|@AUTH_URL@|$AUTH_URL|" -e "s|@ADMIN_PASSWORD@|$ESCAPED_PW|" \
  -e "s|@IMAGE_REF@|$IMAGE_REF|" -e "s|@IMAGE_REF_ALT@|$IMAGE_REF_ALT|" \
  "${TEMPEST_CONF_TEMPLATE:-$TEMPLATE}" >"$WORK/ws/etc/tempest.conf"

cd "$WORK/ws"
echo "tempest: running '$REGEX' with concurrency $CONCURRENCY (log: $WORK/tempest-run.log)"
set +e
HOME="$WORK" timeout --kill-after=30 "$RUN_TIMEOUT" "$TEMPEST" run \
  --config-file "$WORK/ws/etc/tempest.conf" --regex "$REGEX" --concurrency "$CONCURRENCY" \
  >"$WORK/tempest-run.log" 2>&1
RUN_STATUS=$?
set -e
if [[ $RUN_STATUS -eq 124 || $RUN_STATUS -eq 137 ]]; then
  echo "tempest: run timed out after $RUN_TIMEOUT s; summarizing what finished" >&2
fi
timeout 120 "$STESTR" last --subunit >"$WORK/results.subunit" 2>"$WORK/stestr.err" \
  || { tail -40 "$WORK/tempest-run.log" >&2; cat "$WORK/stestr.err" >&2; die "no results"; }

ARGS=("$WORK/results.subunit" "$EXPECTED")
if [[ "${UPDATE_EXPECTED:-}" == 1 ]]; then
  ARGS+=(--write-passing "$EXPECTED")
fi
set +e
"$PY" "$HERE/summarize.py" "${ARGS[@]}"
STATUS=$?
set -e
# A failing run's temp folder (with the server's log) is removed on exit: print the end of the
# log (warnings and errors only by default) so that a CI failure can be diagnosed.
if [[ $STATUS -ne 0 && -s "$WORK/server.log" ]]; then
  echo "tempest: the last 80 lines of the server's log:" >&2
  tail -80 "$WORK/server.log" >&2
fi
if [[ -n "$SERVER_PID" ]] && ! alive "$SERVER_PID"; then
  echo "tempest: the server died during the run:" >&2
  tail -20 "$WORK/server.log" >&2
  exit 2
fi
exit $STATUS
