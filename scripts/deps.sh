#!/usr/bin/env bash
# Installs the Debian packages clbn needs to build and test, when missing.
# Usage: scripts/deps.sh [extra-package ...]
# Uses sudo when not root. Safe to run again: it installs only what is missing.
set -euo pipefail

# libcjson-dev: safetensors headers (linked by the library); libclblast-dev:
# samples/conv_bn_relu; doxygen: the API reference (docs/make_docs.sh);
# openmpi-bin, libopenmpi-dev: clbn_mpi, samples/sync_bn_mpi and its tests (label mpi);
# dpkg-dev (dpkg-shlibdeps, dpkg-buildflags), file, binutils, lintian: the Debian
# packages (scripts/package.sh).
# python3-*: the Python binding (python/), its tests and samples/python; python3-torch
# (PyTorch 1.13, about 80 MB to download, 760 MB installed, a minute to install) runs
# them side by side with PyTorch and the parity goldens' generator check.
# The three OpenCL implementations CI runs on (docs/portability.md):
# pocl-opencl-icd (PoCL), mesa-opencl-icd (Mesa's Rusticl, device llvmpipe with
# RUSTICL_ENABLE=llvmpipe) and oclgrind (the device simulator); clinfo for
# scripts/device_check.sh.
packages=(gcc g++ make cmake pkg-config ocl-icd-opencl-dev opencl-headers pocl-opencl-icd check
          libcjson-dev libclblast-dev doxygen openmpi-bin libopenmpi-dev mesa-opencl-icd oclgrind
          clinfo dpkg-dev file binutils lintian
          python3-pyopencl python3-numpy python3-pytest python3-setuptools python3-pip
          python3-torch "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "clbn: installing missing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "clbn: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
