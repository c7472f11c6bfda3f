#!/usr/bin/env bash
# Builds clbn and runs samples/quickstart (installs Debian packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DCLBN_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j "$(nproc)" --target quickstart >/dev/null
./build/release/samples/quickstart
