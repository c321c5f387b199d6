#!/usr/bin/env bash
# Install the Debian packages relprop needs to build, test and run its tools,
# when they are missing. Safe to run again.
#   setup.sh           what `make demo` needs, and the test suite's tools
#   setup.sh --tests   also PyTorch, for the tests that export a torch model
#                      (the Python package's from_torch); `make test` runs it
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  libopenblas-dev check libsubunit-dev libstb-dev libcjson-dev
  libjpeg62-turbo-dev libpng-dev
  libonnx-testdata
  python3 python3-numpy valgrind clang libclang-rt-14-dev
  python3-pil libjpeg-turbo-progs
  python3-dev python3-setuptools python3-pytest
)
if [ "${1:-}" = --tests ]; then
  packages+=(python3-torch)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
