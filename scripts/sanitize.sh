#!/usr/bin/env bash
# Sanitizer, valgrind and fuzzing runs of clbn (see README.md, "Guarantees").
#
#   scripts/sanitize.sh asan       AddressSanitizer + UndefinedBehaviorSanitizer (clang) build of the
#                                  library and every test in build/asan; runs ctest there (all but
#                                  package_install, the python generators, the Python binding's tests
#                                  and `large`). Leaks are
#                                  detected (LeakSanitizer); tests/sanitizers/lsan.supp silences only
#                                  PoCL's kernel compiler. check_faults runs every 4th fault point.
#   scripts/sanitize.sh tsan       ThreadSanitizer build (build/tsan) of the library, check_concurrency,
#                                  check_context, check_sync (one thread per participant) and check_plan (threads on one plan); runs
#                                  them (tests/sanitizers/tsan.supp).
#   scripts/sanitize.sh valgrind   valgrind memcheck on samples/quickstart (build/valgrind): no memory
#                                  error and no definite leak outside PoCL's compiler
#                                  (tests/sanitizers/valgrind.supp).
#   scripts/sanitize.sh fuzz [S]   libFuzzer (clang, ASan + UBSan) builds of tests/fuzz/fuzz_layer_load.c
#                                  and fuzz_args.c (build/fuzz), S seconds each (default 30), from the
#                                  committed corpora in tests/fuzz/corpus/; new inputs go to
#                                  build/fuzz/work, crashes to build/fuzz/artifacts.
#   scripts/sanitize.sh all [S]    all four.
#
# Installs the Debian packages it needs when missing (scripts/deps.sh). Any
# report or failing test fails the run (non-zero exit status).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
supp=$root/tests/sanitizers
mode=${1:-}
jobs=$(nproc)

# The sanitized runs use PoCL's ICD alone: Mesa's Clover ICD (mesa-opencl-icd,
# installed for Rusticl) throws a C++ exception while the ICD loader loads it,
# and ASan's __cxa_throw interceptor aborts on that in every test (seen with
# Debian 12's clang 14 and Mesa 22.3.6). CLBN_SANITIZE_ICD picks another file.
icd=${CLBN_SANITIZE_ICD:-/etc/OpenCL/vendors/pocl.icd}
if [ -f "$icd" ]; then
  export OCL_ICD_VENDORS=$icd
fi

# Options of the clang builds: the library's own tests, not the benchmarks.
common=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
        -DCLBN_KERNEL_WERROR=ON -DCLBN_BUILD_BENCH=OFF)

# The sanitizer runtimes are linked into the executables only (clang's
# default); shared libraries take their symbols from there. So the fault shim,
# built without instrumentation, stays loadable in the programs PoCL runs.
configure() { # build dir, sanitizer flags, extra cmake options...
  local dir=$1 flags=$2
  shift 2
  cmake -S . -B "$dir" "${common[@]}" "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" \
        "-DCMAKE_EXE_LINKER_FLAGS=$flags" -DCMAKE_SHARED_LINKER_FLAGS= "$@" >/dev/null
}

run_asan() {
  bash scripts/deps.sh clang libclang-rt-14-dev
  configure build/asan "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  cmake --build build/asan -j "$jobs"
  # package_install builds a consumer without the sanitizer runtime; the
  # generators need python3-torch. `large` needs 8 GiB more than usual. Python
  # cannot load the instrumented libclbn (the ASan runtime is in the executables
  # only), so python_tests and sample_python_* are left out too.
  (cd build/asan &&
   ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1 \
   LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   CLBN_FAULT_STRIDE=4 \
   ctest --output-on-failure --timeout 900 -j "$jobs" -LE large -E 'package_install|_generator$|^python_tests$|^sample_python_')
}

run_tsan() {
  bash scripts/deps.sh clang libclang-rt-14-dev
  configure build/tsan "-fsanitize=thread -fno-omit-frame-pointer" -DCLBN_BUILD_SAMPLES=OFF
  cmake --build build/tsan -j "$jobs" --target check_concurrency check_context check_sync check_plan
  (cd build/tsan &&
   TSAN_OPTIONS="suppressions=$supp/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
   ctest --output-on-failure --timeout 900 -j "$jobs" -R '^(check_concurrency|check_context|check_sync|check_plan)$')
}

run_valgrind() {
  bash scripts/deps.sh valgrind
  cmake -S . -B build/valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLBN_BUILD_TESTS=OFF -DCLBN_BUILD_BENCH=OFF \
        >/dev/null
  cmake --build build/valgrind -j "$jobs" --target quickstart
  valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
           --num-callers=40 --suppressions="$supp/valgrind.supp" build/valgrind/samples/quickstart
}

run_fuzz() {
  local seconds=${1:-30}
  bash scripts/deps.sh clang libclang-rt-14-dev
  configure build/fuzz "-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer" \
            -DCLBN_FUZZ=ON -DBUILD_SHARED_LIBS=OFF -DCLBN_BUILD_SAMPLES=OFF
  cmake --build build/fuzz -j "$jobs" --target fuzz_layer_load fuzz_args
  mkdir -p build/fuzz/artifacts
  for target in layer_load args; do
    mkdir -p "build/fuzz/work/$target"
    echo "fuzzing $target for $seconds s"
    LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0 \
    "build/fuzz/tests/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 \
        -artifact_prefix=build/fuzz/artifacts/ "build/fuzz/work/$target" "tests/fuzz/corpus/$target" \
        2>&1 | grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' || return 1
  done
}

case "$mode" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  valgrind) run_valgrind ;;
  fuzz) run_fuzz "${2:-30}" ;;
  all) run_asan && run_tsan && run_valgrind && run_fuzz "${2:-30}" ;;
  *) sed -n '2,21p' "$0" >&2; exit 2 ;;
esac
