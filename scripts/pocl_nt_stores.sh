#!/usr/bin/env bash
# Counts, per kernel, the non-temporal (streaming) stores and the software
# prefetches in the machine code that PoCL built for clbn's kernels, so that a
# change which silently loses them can be seen (no result test can: the values
# are the same either way). Twice so far LLVM 15 turned clbn's streaming
# stores into plain ones: merged with a plain store of the other branch
# (2026-12-06, the NHWC passes' 16-bit stores) and sunk out of two branches
# (2026-12-06, the flat walk's float32 stores; docs/portability.md).
#
#   bash scripts/pocl_nt_stores.sh [--check] [BUILD_DIR (build/ab)] [DTYPE...]
#
# --check (the CTest pocl_nt_stores): exit 1 when a kernel that writes a
# tensor (the normalize, inference and dx passes, the channel-resident
# kernels) has no streaming store, except the one known below, or when
# fewer than 5 such kernels were built; exit 77 (skipped) off x86-64, without
# objdump, or without PoCL's CPU device.
# Known: float16 clbn_channel_backward has none. Its loop (bwd_dx_run,
# cl/backward.cl) chooses per vector between the two stores, and LLVM 15
# merges a 16-bit streaming store with the plain one of the other branch; run
# twice (STREAM_UNSWITCH) it kept 2, but 32x64x56x56 NCHW float16 backward
# timed the same (wall 0.94-1.03x, alternate runs, 2026-12-06), so it stays.
#
# Runs clbn_bench on PoCL's CPU device (CLBN_DEVICE=pthread) over shapes that
# reach the elementwise kernels (NCHW rows, the flat walk, the NHWC passes;
# forward, inference and backward) with an empty PoCL cache, then disassembles
# each kernel's shared object (objdump) and prints, per dtype and kernel, the
# count of streaming stores (movnt*) and prefetches. Compare with the parent
# commit's counts; a kernel whose streaming-store count falls lost some.
# Needs clbn_bench built (cmake --build BUILD_DIR --target clbn_bench) and
# objdump (binutils). The IR says it more directly: with Debian's llvm-15,
# `/usr/lib/llvm-15/bin/llvm-dis program.bc` of a PoCL cache entry shows
# `!nontemporal` on each streaming store (2026-12-06: on all 74 float32
# `store <8 x float>` of the five elementwise kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
build=${1:-build/ab}
shift || true
dtypes=("$@")
[ ${#dtypes[@]} -gt 0 ] || dtypes=(f32 f16 bf16)
bench=$build/bench/clbn_bench
[ -x "$bench" ] || { echo "pocl_nt_stores: no $bench (build the clbn_bench target first)" >&2; exit 2; }
skip=$([ $check = 1 ] && echo 77 || echo 2)
[ "$(uname -m)" = x86_64 ] || { echo "pocl_nt_stores: counts x86 instructions (movnt*); skipped on $(uname -m)"; exit "$skip"; }
command -v objdump >/dev/null || { echo "pocl_nt_stores: objdump not found (apt-get install binutils)"; exit "$skip"; }
CLBN_DEVICE=pthread "$bench" --shape 2x8x8 --mode infer --iters 1 --warmup 0 >/dev/null 2>&1 ||
    { echo "pocl_nt_stores: no PoCL CPU device (CLBN_DEVICE=pthread)"; exit "$skip"; }
failures=0
cases=("32x64x56x56 nchw" "256x512x7x7 nchw" "32x64x56x56 nhwc" "32x256x14x14 nhwc" "32x2048x7x7 nhwc")
for dt in "${dtypes[@]}"; do
    cache=$(mktemp -d)
    for c in "${cases[@]}"; do
        read -r shape layout <<<"$c"
        for mode in train infer backward; do
            POCL_CACHE_DIR=$cache CLBN_DEVICE=pthread CLBN_TUNING_DB=off "$bench" --shape "$shape" \
                --layout "$layout" --mode "$mode" --dtype "$dt" --iters 1 --warmup 0 >/dev/null 2>&1 ||
                echo "pocl_nt_stores: clbn_bench $shape $layout $mode $dt failed" >&2
        done
    done
    # the channel-resident training forward (GPUs' choice, reachable on PoCL)
    POCL_CACHE_DIR=$cache CLBN_DEVICE=pthread CLBN_TUNING_DB=off CLBN_CHANNEL_TRAINING=1 "$bench" \
        --shape 32x64x56x56 --mode train --dtype "$dt" --iters 1 --warmup 0 >/dev/null 2>&1 ||
        echo "pocl_nt_stores: clbn_bench 32x64x56x56 train $dt (channel-resident) failed" >&2
    echo "== $dt (kernel: streaming stores, prefetches)"
    counts=$(find "$cache" -name '*.so' | while read -r so; do
        k=$(basename "$so" .so)
        dis=$(objdump -d --no-show-raw-insn "$so")
        printf '%-36s %4d %4d\n' "$k" "$(grep -c 'movnt' <<<"$dis" || true)" \
            "$(grep -c 'prefetch' <<<"$dis" || true)"
    done | sort | awk '{ if (seen[$1]++) next; print }')
    echo "$counts"
    rm -rf "$cache"
    if [ $check = 1 ]; then
        writers=$(awk '$1 ~ /^clbn_(normalize_|inference_nchw|backward_dx_|channel_(backward|training))/' <<<"$counts")
        missing=$(awk -v dt="$dt" '$2 == 0 && !(dt == "f16" && $1 == "clbn_channel_backward") { print $1 }' \
            <<<"$writers")
        if [ "$(grep -c . <<<"$writers")" -lt 5 ]; then
            echo "FAIL $dt: only $(grep -c . <<<"$writers") tensor-writing kernels built (expected 5 or more)"
            failures=$((failures + 1))
        fi
        for k in $missing; do
            echo "FAIL $dt: $k has no streaming store"
            failures=$((failures + 1))
        done
    fi
done
if [ $check = 1 ]; then
    echo "pocl_nt_stores: ${#dtypes[@]} dtypes, $failures failures"
    [ $failures = 0 ]
fi
