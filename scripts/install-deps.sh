#!/usr/bin/env bash
# Installs, from Debian 12's archive only, what Concord needs to build, run and test.
# Idempotent: packages already present are skipped, so a second run costs one dpkg query.
#
#   scripts/install-deps.sh            build + run dependencies
#   scripts/install-deps.sh --test     also what the test suite needs (PostgreSQL, the
#                                      OpenStack clients, Tempest, clang for fuzzing)
#   scripts/install-deps.sh --bench    also the benchmark anchors (Keystone, uWSGI, wrk)
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build ccache pkg-config
  libboost-dev nlohmann-json3-dev libsqlite3-dev libpq-dev libssl-dev libargon2-dev
  libspdlog-dev libfmt-dev libcli11-dev
  # Image uploads: zlib to peek into gzip'd container tarballs, qemu-img to inspect disk images.
  zlib1g-dev qemu-utils
  python3-minimal ca-certificates curl
  # Compute drivers at run time (src/compute/driver): runc for containers (crun refuses hybrid
  # cgroups), QEMU + qemu-img for VMs, xorriso for config drives, iproute2 for bridges/veths.
  runc qemu-system-x86 qemu-utils xorriso iproute2 tar
  # Managed database engines at run time (src/database/engine, the agents' database driver):
  # run as the system user concord-db (created below); the Debian services themselves stay
  # stopped and disabled. openssl makes each instance's TLS certificate; zstd (de)compresses
  # backups and shipped logs (tar --zstd). Each instance's volume is a loop-mounted ext4 image
  # (src/compute/driver/database_volume.h): e2fsprogs and util-linux's mount tools.
  postgresql-15 mariadb-server mariadb-client mariadb-backup openssl zstd e2fsprogs mount
  # Inference runtime (src/inference/runtime): OpenCV dnn runs ONNX models; only core and dnn,
  # not the libopencv-dev meta package that pulls every module.
  libopencv-dnn-dev libopencv-core-dev
)
test_pkgs=(
  libgtest-dev libgmock-dev libbenchmark-dev
  # clang-16: the first clang that compiles libstdc++ 12's <expected> (base/result.h), so the
  # libFuzzer targets build with it (see docs/design/tokens.md, "Fuzzing").
  clang-16 libclang-rt-16-dev
  postgresql-15
  python3-openstackclient python3-openstacksdk python3-keystoneclient python3-troveclient tempest
  # tests/tempest database profile: trove-tempest-plugin's scenario tests; the failover test's
  # client speaks psycopg2 and PyMySQL (named, not left to the plugin's dependencies).
  trove-tempest-plugin python3-psycopg2 python3-pymysql
  python3-yaml jq procps
  # Guest images the driver tests boot (tests/fixtures/build-images.sh): busybox rootfs,
  # Debian's kernel + busybox initramfs on a syslinux FAT disk.
  busybox-static linux-image-amd64 syslinux syslinux-common mtools dosfstools cpio
  # The inference tests classify Fashion-MNIST's 10,000 test images (tests/inference). The
  # model they load is committed (tests/fixtures/models); remaking it needs python3-torch
  # (about 1.2 GB, so not listed here): apt-get install python3-torch python3-onnx, then
  # /usr/bin/python3 tests/fixtures/models/train_fashion_mnist.py
  dataset-fashion-mnist
  # ONNX's own operator test models: the ONNX metadata reader must parse all of them.
  libonnx-testdata
)
bench_pkgs=(
  keystone uwsgi uwsgi-plugin-python3 wrk python3-keystone
  # The endpoint proxy's anchor (bench/database/proxy.sh); pgbench comes with postgresql-15.
  pgbouncer
  # The failover anchor (bench/database/failover.sh): Patroni 3.0.2 on etcd 3.4 behind HAProxy
  # 2.6; its client is python3-psycopg2 (in test_pkgs: the failover test uses it too).
  patroni etcd-server haproxy
)

want=("${build_pkgs[@]}")
for arg in "$@"; do
  case "$arg" in
    --test) want+=("${test_pkgs[@]}") ;;
    --bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

# The database engines run as this unprivileged user (PostgreSQL refuses root); idempotent.
ensure_db_user() {
  if ! id -u concord-db >/dev/null 2>&1; then
    "${sudo_cmd[@]}" useradd --system --no-create-home --shell /usr/sbin/nologin concord-db
  fi
}

# Our engines listen on their own addresses and sockets; the Debian services would collide
# (port 5432/3306, /run/mysqld), so they must never run. Idempotent; no-op without systemd.
stop_packaged_db_services() {
  local svc
  for svc in postgresql mariadb; do
    if command -v systemctl >/dev/null 2>&1; then
      # Works offline too (edits the unit links), so a later boot with systemd keeps it off.
      "${sudo_cmd[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
      if [[ -d /run/systemd/system ]]; then
        "${sudo_cmd[@]}" systemctl stop "$svc" >/dev/null 2>&1 || true
      fi
    fi
    if [[ -x /etc/init.d/$svc ]]; then
      if [[ ! -d /run/systemd/system ]]; then
        "${sudo_cmd[@]}" /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
      fi
      if command -v update-rc.d >/dev/null 2>&1; then
        "${sudo_cmd[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
      fi
    fi
  done
}

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  ensure_db_user
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# Debian's postgresql-15, mariadb-server and keystone packages try to start services on
# install; the tests and benchmarks start their own instances, so keep the packaged ones from
# running.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
  trap '"${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
ensure_db_user
stop_packaged_db_services
