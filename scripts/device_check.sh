#!/usr/bin/env bash
# Runs clbn's test suite on each vendor OpenCL driver of this machine (any ICD
# other than PoCL, Mesa's Clover/Rusticl and Oclgrind, which CI covers), one
# command: scripts/device_check.sh [ctest arguments...]
# Says so and exits 0 when there is none. Builds like scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
shopt -s nullglob
vendors=()
for icd in /etc/OpenCL/vendors/*.icd; do
  lib=$(head -n 1 "$icd")
  case "$(basename "$icd") $lib" in
    *pocl* | *mesa* | *rusticl* | *Rusticl* | *MesaOpenCL* | *oclgrind*) ;;
    *) vendors+=("$icd") ;;
  esac
done
if [ ${#vendors[@]} -eq 0 ]; then
  echo "device_check: no vendor OpenCL ICD here (/etc/OpenCL/vendors has only:" \
       "$(cd /etc/OpenCL/vendors 2>/dev/null && echo *.icd)); nothing to run beyond CI's PoCL, Rusticl and Oclgrind"
  exit 0
fi
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLBN_KERNEL_WERROR=ON >/dev/null
cmake --build build/test -j "$(nproc)"
status=0
for icd in "${vendors[@]}"; do
  echo "== $icd ($(head -n 1 "$icd"))"
  # only this ICD: the loader reads OCL_ICD_VENDORS (ocl-icd) / OCL_ICD_FILENAMES (Khronos)
  export OCL_ICD_VENDORS="$icd" OCL_ICD_FILENAMES="$(head -n 1 "$icd")"
  clinfo -l 2>/dev/null || true
  (cd build/test && ctest --output-on-failure --timeout 900 -LE large "$@") || status=1
done
exit $status
