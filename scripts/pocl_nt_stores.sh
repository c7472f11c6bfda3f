#!/usr/bin/env bash
# Counts, per kernel, the non-temporal (streaming) stores and the software
# prefetches in the machine code that PoCL built for clbn's kernels, so that a
# change which silently loses them can be seen (no result test can: the values
# are the same either way). Twice so far LLVM 15 turned clbn's streaming
# stores into plain ones: merged with a plain store of the other branch
# (2026-12-06, the NHWC passes' 16-bit stores) and sunk out of two branches
# (2026-12-06, the flat walk's float32 stores; docs/portability.md).
#
#   bash scripts/pocl_nt_stores.sh [BUILD_DIR (build/ab)] [DTYPE...]
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
build=${1:-build/ab}
shift || true
dtypes=("$@")
[ ${#dtypes[@]} -gt 0 ] || dtypes=(f32 f16 bf16)
bench=$build/bench/clbn_bench
[ -x "$bench" ] || { echo "pocl_nt_stores: no $bench (build the clbn_bench target first)" >&2; exit 2; }
command -v objdump >/dev/null || { echo "pocl_nt_stores: objdump not found (apt-get install binutils)" >&2; exit 2; }
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
    echo "== $dt (kernel: streaming stores, prefetches)"
    find "$cache" -name '*.so' | while read -r so; do
        k=$(basename "$so" .so)
        dis=$(objdump -d --no-show-raw-insn "$so")
        printf '%-36s %4d %4d\n' "$k" "$(grep -c 'movnt' <<<"$dis" || true)" \
            "$(grep -c 'prefetch' <<<"$dis" || true)"
    done | sort | awk '{ if (seen[$1]++) next; print }'
    rm -rf "$cache"
done
