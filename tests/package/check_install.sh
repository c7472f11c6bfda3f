#!/usr/bin/env bash
# Installs the built clbn into a temporary prefix, then builds and runs a
# consumer through find_package(clbn) and through pkg-config.
#   check_install.sh <clbn build dir> <source dir of this test>
set -euo pipefail
build=$1
here=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
ls "$libdir"/libclbn.so.0 >/dev/null            # SOVERSION link
ls "$libdir"/cmake/clbn/clbnConfig.cmake >/dev/null

cmake -S "$here" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/consumer/consumer"
# clbn_mpi: installed when the build has it; then find_package exposes
# clbn::clbn_mpi and a consumer runs on 2 ranks.
if ls "$libdir"/libclbn_mpi.so* >/dev/null 2>&1; then
  ls "$libdir"/cmake/clbn/clbnMpiTargets.cmake "$work"/prefix/include/clbn_mpi.h >/dev/null
  [ -x "$work/consumer/consumer_mpi" ] || { echo "clbn_mpi installed but clbn::clbn_mpi not exposed" >&2; exit 1; }
  LD_LIBRARY_PATH="$libdir" bash "$here/../run_mpi.sh" 2 "$work/consumer/consumer_mpi"
fi

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$work/consumer_pc" "$here/consumer.c" $(pkg-config --cflags --libs clbn)
LD_LIBRARY_PATH="$libdir" "$work/consumer_pc"
echo "install check passed (find_package and pkg-config)"
