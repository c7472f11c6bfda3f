#!/usr/bin/env bash
# Builds the safetensors fuzzer (tests/fuzz/fuzz_safetensors.c with
# src/safetensors_parse.c, clang -fsanitize=fuzzer,address,undefined) and runs
# it for SECONDS (default 60) in one process, starting from the committed seed
# corpus (tests/fuzz/corpus/safetensors).
#
#   tests/fuzz/run_safetensors.sh [SECONDS] [extra libFuzzer flags...]
#
# New interesting inputs go to a scratch corpus under the build folder, not
# into the committed one (copy the useful ones there by hand). A crash leaves
# crash-* / leak-* files in that folder and a non-zero exit status.
# Needs: clang, libclang-rt-14-dev (the fuzzer and sanitizer runtimes),
# libcjson-dev, opencl-headers. Installs them when missing (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
bash scripts/deps.sh clang libclang-rt-14-dev libcjson-dev opencl-headers

out=build/fuzz_safetensors
mkdir -p "$out/include/clbn" "$out/corpus" "$out/artifacts"
# clbn.h includes the generated clbn/version.h; the fuzzer needs only its macros.
major=$(sed -n 's/^project(clbn VERSION \([0-9]*\)\.\([0-9]*\)\.\([0-9]*\).*/\1/p' CMakeLists.txt)
minor=$(sed -n 's/^project(clbn VERSION \([0-9]*\)\.\([0-9]*\)\.\([0-9]*\).*/\2/p' CMakeLists.txt)
patch=$(sed -n 's/^project(clbn VERSION \([0-9]*\)\.\([0-9]*\)\.\([0-9]*\).*/\3/p' CMakeLists.txt)
sed -e "s/@PROJECT_VERSION_MAJOR@/${major:-0}/" -e "s/@PROJECT_VERSION_MINOR@/${minor:-0}/" \
    -e "s/@PROJECT_VERSION_PATCH@/${patch:-0}/" -e "s/@PROJECT_VERSION@/${major:-0}.${minor:-0}.${patch:-0}/" \
    cmake/version.h.in > "$out/include/clbn/version.h"

clang -g -O1 -std=c99 -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120 \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror -Iinclude -I"$out/include" -Isrc \
    tests/fuzz/fuzz_safetensors.c src/safetensors_parse.c -lcjson -o "$out/fuzz_safetensors"

echo "fuzzing the safetensors loader for ${seconds} s (seed corpus tests/fuzz/corpus/safetensors)"
"$out/fuzz_safetensors" -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 \
    -artifact_prefix="$out/artifacts/" "$@" "$out/corpus" tests/fuzz/corpus/safetensors
