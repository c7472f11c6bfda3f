#!/usr/bin/env bash
# Builds clbn with its tests and samples and runs the whole suite through CTest
# (installs Debian packages when missing). Kernels are compiled with -Werror.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLBN_KERNEL_WERROR=ON >/dev/null
cmake --build build/test -j "$(nproc)"
cd build/test
# Tests labelled `large` (an 8 GiB tensor) run only when a label is asked for:
# scripts/test.sh -L large
labels=(-LE large)
for a in "$@"; do case "$a" in -LE* | --label-exclude*) ;; -L* | --label-regex*) labels=() ;; esac; done
ctest --output-on-failure --timeout 600 -j "$(nproc)" "${labels[@]}" "$@"
