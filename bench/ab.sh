#!/usr/bin/env bash
# Alternate runs of two clbn builds (or two settings of one build), for
# changes smaller than a shared machine's swings between runs (the suite's
# tables move by 0.7-1.5x between runs on the VMs this project measures on;
# one build timed twice minutes apart can differ 2x). Each round runs every
# case once with A and once with B, back to back; the report gives, per
# case, the median and the minimum over the rounds and B / A.
#
#   bash bench/ab.sh [options] CASE...
#     CASE       "SHAPE MODE [DTYPE [LAYOUT]]", e.g. "64x256x14x14 backward"
#                or "32x64x56x56 infer f16 nhwc" (modes train|infer|backward)
#     --base REV A is that commit, built in a git worktree under
#                ${TMPDIR:-/tmp}/clbn-ab/REV (default: HEAD); B is the
#                working tree as it is, built in build/ab
#     --same     A and B are both the working tree's build (compare settings)
#     --a-env "VAR=V ..." / --b-env "VAR=V ...": environment of A's / B's runs
#     --a-tuning TEXT / --b-tuning TEXT: clbn_bench --tuning TEXT for A's / B's
#                runs (a tuning parameter's value against another, with --same)
#     --kernel NAME  time that kernel (clbn_bench --profile: the median of 20
#                profiled calls, us) instead of the wall time per call (ms);
#                "NAME1|NAME2" takes either (a kernel that the change replaces)
#     --rounds R (10), --iters N (100 calls a run; fewer when a run would
#                take over a second)
# Example: bash bench/ab.sh --base HEAD~1 --kernel clbn_stats_nchw_rows "64x256x14x14 train"
#          bash bench/ab.sh --same --b-env CLBN_STREAM_MB=0 "32x64x56x56 backward"
# Builds in Release (cmake, tests off). Keep the machine otherwise quiet.
# Threads are pinned as in run_suite.sh: PoCL's workers (POCL_AFFINITY=1
# unless the environment sets it) and each run's calling thread (taskset -c
# 0): unpinned, one process's median moved 0.50-0.85 ms where pinned ones
# gave 0.53-0.57 (64x256x14x14 inference, 2026-12-06), which swamps most
# changes.
# The worktree stays for the next comparison with that commit:
# `git worktree remove --force ${TMPDIR:-/tmp}/clbn-ab/REV` when done.
set -euo pipefail
cd "$(dirname "$0")/.."
export POCL_AFFINITY=${POCL_AFFINITY:-1}
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
base=HEAD same=0 aenv="" benv="" atun="" btun="" kernel="" rounds=10 iters=100
cases=()
while [ $# -gt 0 ]; do
    case "$1" in
    --base) base=$2; shift 2 ;;
    --same) same=1; shift ;;
    --a-env) aenv=$2; shift 2 ;;
    --b-env) benv=$2; shift 2 ;;
    --a-tuning) atun=$2; shift 2 ;;
    --b-tuning) btun=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) cases+=("$1"); shift ;;
    esac
done
[ ${#cases[@]} -gt 0 ] || { echo "ab.sh: no case (see --help)" >&2; exit 2; }

build() { # SRC DIR
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DCLBN_BUILD_TESTS=OFF >/dev/null
    cmake --build "$2" -j"$(nproc)" --target clbn_bench >/dev/null
}
build . build/ab
B=build/ab/bench/clbn_bench
if [ $same = 1 ]; then
    A=$B
else
    rev=$(git rev-parse --short "$base")
    wt=${TMPDIR:-/tmp}/clbn-ab/$rev
    [ -d "$wt" ] || git worktree add -f --detach "$wt" "$rev" >/dev/null
    build "$wt" "$wt/build"
    A=$wt/build/bench/clbn_bench
fi

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
one() { # BIN ENV CASE TUNING -> a number (ms, or us with --kernel), or nothing
    local bin=$1 envs=$2 shape mode dtype layout
    read -r shape mode dtype layout <<<"$3"
    local args=(--shape "$shape" --mode "$mode" --dtype "${dtype:-f32}" --layout "${layout:-nchw}"
                --plan --iters "$iters" --max-seconds 1)
    [ -z "$4" ] || args+=(--tuning "$4")
    if [ -n "$kernel" ]; then
        # shellcheck disable=SC2086
        env $envs "${pin[@]}" "$bin" "${args[@]}" --profile 2>/dev/null |
            awk -v k="$kernel" '$2 ~ ("^(" k ")$") { for (i = 1; i < NF; ++i) if ($i == "run") { print $(i + 1); exit } }'
    else
        # shellcheck disable=SC2086
        env $envs "${pin[@]}" "$bin" "${args[@]}" --csv --no-header 2>/dev/null | tail -1 | cut -d, -f9
    fi
}
for r in $(seq "$rounds"); do
    for c in "${cases[@]}"; do
        echo "$c|A|$(one "$A" "$aenv" "$c" "$atun")" >>"$raw"
        echo "$c|B|$(one "$B" "$benv" "$c" "$btun")" >>"$raw"
    done
done
echo "A: ${aenv:+$aenv }$A${atun:+ --tuning '$atun'}; B: ${benv:+$benv }$B${btun:+ --tuning '$btun'}; ${kernel:-wall time per call, ms}${kernel:+ run time, us}; $rounds rounds"
python3 - "$raw" <<'PY'
import collections, statistics, sys
def ratio(b, a):  # a device whose profiling reports 0 us (llvmpipe) gives no ratio
    return b / a if a else float("nan")
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    c, k, v = line.rstrip("\n").rsplit("|", 2)
    if v:
        d[(c, k)].append(float(v))
for c in dict.fromkeys(c for c, _ in d):
    a, b = d[(c, "A")], d[(c, "B")]
    if not a or not b:
        print("%-32s no result" % c)
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    print("%-32s median A %9.4g B %9.4g B/A %.2f | min A %9.4g B %9.4g B/A %.2f (%d, %d runs)"
          % (c, ma, mb, ratio(mb, ma), min(a), min(b), ratio(min(b), min(a)), len(a), len(b)))
PY
