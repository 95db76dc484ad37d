#!/usr/bin/env bash
# Installs the Debian packages Castor needs (only those missing) and builds one
# configuration. Idempotent: a second run installs nothing and rebuilds only what
# changed (ccache keeps even a clean rebuild fast).
#
#   scripts/setup.sh release   -> build/release (Release)
#   scripts/setup.sh test      -> build/test    (Debug + ASan/UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  liburing-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libisal-dev
  fio procps jq bsdextrautils bc
  libnbd-bin nbdkit fuse3 e2fsprogs util-linux mount iproute2
  nettle-dev libiscsi-bin tgt
  qemu-system-x86 tshark
  libsqlite3-dev libcpp-httplib-dev golang-etcd-server-dev etcd-server etcd-client
  libblkid-dev python3-grpcio python3-protobuf
  unzip
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm for tests/deploy (kubectl, helm and Kubernetes' schemas come from npm):
# Debian's, unless the machine has a node and npm already (a NodeSource nodejs carries npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  echo "castor setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  # tshark asks whether non-root users may capture: answer no, without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

kind="${1:-release}"
case "$kind" in
  release) dir=build/release; args=(-DCMAKE_BUILD_TYPE=Release) ;;
  test) dir=build/test; args=(-DCMAKE_BUILD_TYPE=Debug -DCASTOR_SANITIZE=ON) ;;
  *) echo "usage: $0 release|test" >&2; exit 2 ;;
esac

# The deployment test's tools (tests/deploy): npm packages into build/npm, once.
if [[ "$kind" == test ]]; then
  tests/deploy/setup-npm.sh
fi

export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
if [[ ! -f "$dir/build.ninja" ]]; then
  cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
fi
echo "castor setup: building $dir (log: $dir/build.log)"
if ! cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1; then
  grep -E -A5 'error|FAILED' "$dir/build.log" | head -80
  echo "castor setup: build failed; full log in $dir/build.log" >&2
  exit 1
fi
