#!/usr/bin/env bash
# Installs the Debian 12 packages Myelin builds, tests and benchmarks with, when any is missing.
# Runs apt-get as root, or through sudo. Nothing is downloaded at build time. `postgresql` (the
# server) is for the PostgreSQL storage tests: scripts/pg-test-cluster.sh starts throwaway
# clusters from its binaries; Debian's default cluster it may create is not used. `openssl` (the
# CLI) makes the self-signed certificates of the TLS tests. Node.js and npm (for the matrix-js-sdk
# integration tests, tests/clients/js) are expected at /usr/bin; when either is missing, Debian's
# `nodejs npm` are installed, but Debian 12's nodejs is 18 and matrix-js-sdk 37.5.0 needs >= 20:
# the tests then fail with a message that says so (.ci/run checks this before building).
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  clang libclang-rt-14-dev  # fuzz targets: clang++ with libFuzzer and the sanitizer runtimes
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-system1.81-dev
  libsqlite3-dev libpq-dev libsodium-dev libssl-dev openssl
  libspdlog-dev libfmt-dev libtomlplusplus-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-pytest python3-jsonschema python3-yaml python3-requests python3-matrix-nio
  wrk nginx-light
  postgresql
)

if [ ! -x /usr/bin/node ] || [ ! -x /usr/bin/npm ]; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
