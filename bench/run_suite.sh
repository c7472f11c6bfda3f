#!/usr/bin/env bash
# The whole benchmark in one command:
#
#     bash bench/run_suite.sh            # about 15-17 minutes on a quiet 2-core machine (estimate)
#     bash bench/run_suite.sh --quick    # a smoke test: fewer and shorter runs
#
# Installs the Debian packages it needs when missing (with sudo when not root):
# the build dependencies (scripts/deps.sh), and python3-torch, libdnnl-dev and
# gnuplot-nox for the peers and the plot (each optional: a peer that cannot be
# installed is left out). Builds clbn and bench/ in Release (build/bench),
# measures the copy bandwidth (stream_copy) and PoCL's empty-kernel floor
# (empty_kernel), clbn's cold and warm start-up, then runs clbn_bench (with
# --verify), peer_torch.py and peer_onednn over the suite's shapes, each in
# NCHW and NHWC and each as training forward, inference and backward, shape by
# shape so that the implementations compared share the machine's state. For
# the shapes of 8 MB or more in float32, clbn also runs in float16 and
# bfloat16 right after its float32 runs (clbn_bench --dtype f16|bf16; the
# peers stay float32), fewer calls each. Writes bench/results/<date>/
# (results.csv, the raw logs, table.md, plot.png) and prints table.md.
#
# In the same run: the minimal OpenCL passes (cl_copy: copy, read, read2,
# axpy, and read+copy, read2+axpy back to back in one call; with and without
# streaming stores) on every shape, which bound each clbn mode (inference:
# copy; training: read + copy; backward: read2 + axpy; the chained pairs show
# what two passes reach where a pass timed alone reads from the cache),
# and, with the 16-bit runs, over half the bytes (the 16-bit types' bound);
# clbn tuned beside clbn untuned (round 1 tunes each configuration with
# clbn_bench --tune into a throw-away database, $OUT/tuning.db, which later
# rounds' plans read; the untuned runs use no user database); and the sums over
# ResNet-50's 53 BN layers at batch 32 (12 distinct shapes, both layouts:
# inference, training forward + backward) for clbn untuned and tuned, PyTorch
# and oneDNN. make_table.py reports each mode's ratio to its bound and the
# issue-15 targets.
#
# Options: --quick (1 round, 0.2 s per configuration, 200 ms tuning budget,
#          0.05 s per ResNet-50 configuration: several minutes); --rounds N (2: the suite runs N times, interleaved, and the
#          table takes each configuration's median over the rounds, which keeps
#          a burst of other load on this shared machine out of the numbers);
#          --shapes "32x64x56x56 8x32x16x16" (instead of the suite's shapes);
#          --no-16bit (skip the float16 and bfloat16 runs);
#          --tune-ms MS (800: clbn_plan_tune budget per configuration; 0: no
#          tuned clbn); --no-resnet (skip the ResNet-50 sums);
#          --peer-rounds N (1: the peers and the 16-bit runs take part in the
#          first N rounds only; clbn untuned, tuned and the minimal passes run
#          in every round, the tuned ones after round 1 re-timing the database);
#          --resnet-shapes "32x64x56x56:6 ..." (a subset, to test the scripts:
#          the sums then cover only those layers and say so);
#          --out DIR (instead of bench/results/<date>);
#          --no-pin (leave the worker threads unpinned; see below).
# Threads are pinned to cores by default, clbn's and the peers' alike:
# POCL_AFFINITY=1 for PoCL's workers, OMP_PROC_BIND=close OMP_PLACES=cores
# for the peers' OpenMP threads (a variable already set in the environment is
# kept), and the OpenCL programs' calling thread on core 0 (taskset -c 0;
# PoCL's pinned workers take their own cores). Unpinned, PoCL's two workers
# sometimes shared one vCPU of these VMs: one process's medians of a call
# moved 0.50-0.85 ms on 64x256x14x14 NCHW inference (0.53-0.57 pinned), a
# backward sums kernel ran at one core's speed in 2 of 10 processes (0 of 10
# pinned), and the empty-kernel floor was 62 us against 12 pinned; with the
# calling thread left to migrate, a 128x512 inference call still took
# 0.025 or 0.067 ms by process (0.017-0.027 with it on core 0; 2026-12-06,
# Xeon VM). The peers gained 0-5% pinned.
# The machine is shared: before each shape the suite waits until other
# processes use less than QUIET_PCT (15) % of the CPUs, at most QUIET_WAIT (300)
# seconds in all, and machine.txt records how often it had to measure anyway.
# Environment: CLBN_DEVICE picks the OpenCL device (as in the library); PoCL
# variables (POCL_AFFINITY, ...) pass through to clbn_bench;
# CLBN_BENCH_BUILD_DIR is the build folder (build/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

ARGS="$*"
SHAPES=(32x64x56x56 64x256x14x14 256x2048x7x7 16x3x224x224 64x64x112x112 128x512 8x32x16x16)
MAX_SECONDS=0.5 # timed seconds per configuration (iterations are cut to fit, at least 10)
ROUNDS=2        # the whole suite this many times; the table takes the median of the rounds
ITERS=200
WARMUP=10
# clbn in the 16-bit types, for the shapes of BIG16_BYTES or more in float32:
# shorter runs (these shapes take 1-50 ms a call, so even 10 calls are enough
# for a median): they add about 2.5 minutes to the 3 rounds.
DTYPES16=(f16 bf16)
BIG16_BYTES=8000000
MAX_SECONDS16=0.3
WARMUP16=3
TUNE_MS=800     # clbn_plan_tune budget per configuration (round 1 and the ResNet-50 pass)
RESNET=1
PEER_ROUNDS=1   # the peers and clbn's 16-bit runs take part in this many rounds
# ResNet-50's BN shapes at batch 32 (torchvision) and how many of its 53 BN
# layers have each (as tools/clbn_tune.c; make_table.py has the same counts)
RESNET_SHAPES=(32x64x112x112:1 32x64x56x56:6 32x256x56x56:4 32x128x56x56:1 32x128x28x28:7
               32x512x28x28:5 32x256x28x28:1 32x256x14x14:11 32x1024x14x14:7 32x512x14x14:1
               32x512x7x7:5 32x2048x7x7:4)
RESNET_SECONDS=0.25 # timed seconds per ResNet-50 configuration (at least 10 calls)
COPY_REPS=20        # cl_copy calls per pattern and shape
OUT=""
PIN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MAX_SECONDS=0.2; ITERS=50; WARMUP=3; ROUNDS=1; MAX_SECONDS16=0.1; WARMUP16=2
             TUNE_MS=200; RESNET_SECONDS=0.05; COPY_REPS=5 ;;
    --tune-ms) TUNE_MS="$2"; shift ;;
    --no-resnet) RESNET=0 ;;
    --peer-rounds) PEER_ROUNDS="$2"; shift ;;
    --resnet-shapes) read -r -a RESNET_SHAPES <<<"$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --shapes) read -r -a SHAPES <<<"$2"; shift ;;
    --no-16bit) DTYPES16=() ;;
    --out) OUT="$2"; shift ;;
    --no-pin) PIN=0 ;;
    -h|--help) sed -n '2,64p' "$0"; exit 0 ;;
    *) echo "run_suite: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "[run_suite] $*" >&2; }

# The machine is shared: before each shape, wait (up to QUIET_WAIT seconds in
# all) until other processes use less than QUIET_PCT % of the CPUs, measured
# over half a second from /proc/stat while the suite itself is idle.
QUIET_PCT=${QUIET_PCT:-15}
QUIET_WAIT=${QUIET_WAIT:-300}
waited=0
busy_pct() {
  local a b
  read -r -a a < <(head -1 /proc/stat)
  sleep 0.5
  read -r -a b < <(head -1 /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$(( (b[4] - a[4]) + (b[5] - a[5]) ))
  [ "$total" -gt 0 ] && echo $(( 100 * (total - idle) / total )) || echo 0
}
wait_quiet() {
  local pct
  pct=$(busy_pct)
  while [ "$pct" -gt "$QUIET_PCT" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    [ "$waited" = 0 ] || [ $((waited % 30)) = 0 ] && say "other processes use ${pct}% of the CPUs: waiting (${waited}/${QUIET_WAIT} s)"
    sleep 5
    waited=$((waited + 5))
    pct=$(busy_pct)
  done
  echo "$(date +%T) $1: other processes ${pct}% of the CPUs" >>"$LOG"
  QUIET_CHECKS=$((QUIET_CHECKS + 1))
  [ "$pct" -gt "$QUIET_PCT" ] && { say "busy machine (${pct}%) for $1: measuring anyway"; BUSY_RUNS=$((BUSY_RUNS + 1)); }
  return 0
}
BUSY_RUNS=0
QUIET_CHECKS=0

# --- packages ------------------------------------------------------------------
bash scripts/deps.sh python3
OPTIONAL=(python3-torch libdnnl-dev gnuplot-nox)
if ! bash scripts/deps.sh "${OPTIONAL[@]}"; then
  for p in "${OPTIONAL[@]}"; do
    bash scripts/deps.sh "$p" || say "could not install $p: the part that needs it is skipped"
  done
fi
PY=/usr/bin/python3 # Debian's, which has python3-torch (a pyenv python3 on PATH may not)

# --- build ---------------------------------------------------------------------
BUILD=${CLBN_BENCH_BUILD_DIR:-build/bench}
say "building clbn and bench/ (Release) in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCLBN_BUILD_TESTS=OFF \
  -DCLBN_BUILD_SAMPLES=OFF -DCLBN_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
BIN="$BUILD/bench"
HAVE_TORCH=0
"$PY" -c "import torch" 2>/dev/null && HAVE_TORCH=1 || say "no torch for $PY: PyTorch peer skipped"
HAVE_DNNL=0
[ -x "$BIN/peer_onednn" ] && HAVE_DNNL=1 || say "peer_onednn not built (no libdnnl-dev): oneDNN peer skipped"

# --- results folder ---------------------------------------------------------------
if [ -z "$OUT" ]; then
  OUT="bench/results/$(date +%F)"
  [ -e "$OUT" ] && OUT="bench/results/$(date +%F-%H%M)"
fi
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
say "results in $OUT"
export OMP_NUM_THREADS=2 # the peers' thread count (PoCL uses every core: 2 here)
CLPIN=() # the OpenCL programs' own (calling) thread: core 0 when pinning
if [ $PIN = 1 ]; then
  export POCL_AFFINITY=${POCL_AFFINITY:-1} OMP_PROC_BIND=${OMP_PROC_BIND:-close} OMP_PLACES=${OMP_PLACES:-cores}
  command -v taskset >/dev/null && CLPIN=(taskset -c 0)
fi

{
  echo "date:     $(date '+%F %T %Z')"
  echo "machine:  $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -sr)"
  echo "os:       $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "opencl:   $(clinfo 2>/dev/null | sed -n 's/^ *Platform Version *//p' | head -1) / $(clinfo -l 2>/dev/null | sed -n 's/.*Device #0: *//p' | head -1)"
  echo "device:   $("${CLPIN[@]}" "$BIN/clbn_bench" --shape 8x8x8 --iters 1 --warmup 0 2>/dev/null | sed -n 's/^clbn_bench: clbn [^ ]* on //p')"
  echo "peers:    PyTorch $([ $HAVE_TORCH = 1 ] && "$PY" -c 'import torch; print(torch.__version__)' || echo none), oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null || echo none), OMP_NUM_THREADS=2"
  echo "clbn:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -n "$(git status --porcelain -- cl src include CMakeLists.txt 2>/dev/null)" ] && echo ' + uncommitted changes in cl/ src/ include/ CMakeLists.txt'), Release, CLBN_DEVICE=${CLBN_DEVICE:-}"
  echo "threads:  POCL_AFFINITY=${POCL_AFFINITY:-} OMP_PROC_BIND=${OMP_PROC_BIND:-} OMP_PLACES=${OMP_PLACES:-}; OpenCL programs run as: ${CLPIN[*]:-(unpinned)}$([ $PIN = 1 ] && echo ' (pinned: the default)' || echo ' (--no-pin)')"
  echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at the start"
  echo "command:  bash bench/run_suite.sh $ARGS (rounds $ROUNDS, peers and 16-bit in $PEER_ROUNDS, up to $ITERS calls or ${MAX_SECONDS} s per configuration and round$([ ${#DTYPES16[@]} -gt 0 ] && echo "; clbn ${DTYPES16[*]}: shapes >= $((BIG16_BYTES / 1000000)) MB in float32, up to ${MAX_SECONDS16} s and at least 10 calls, $WARMUP16 warm-up"); tuning budget ${TUNE_MS} ms per configuration; cl_copy $COPY_REPS calls per pass; ResNet-50 sums $([ $RESNET = 1 ] && echo "${RESNET_SECONDS} s per configuration" || echo skipped))"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# --- limits ------------------------------------------------------------------------
wait_quiet "limits"
say "copy bandwidth (stream_copy)"
"$BIN/stream_copy" --csv >"$OUT/stream_copy.csv"
BW=$(awk -F, '$1 == "copy" {print $5}' "$OUT/stream_copy.csv")
say "copy bandwidth: $BW GB/s"

rc=0
"${CLPIN[@]}" "$BIN/empty_kernel" --reps 1 --max-kernels 1 >/dev/null 2>>"$LOG" || rc=$?
[ $rc = 77 ] && { say "no OpenCL device (see $LOG): nothing to measure"; exit 77; }
[ $rc != 0 ] && { say "empty_kernel failed (see $LOG)"; exit 1; }
echo "round,shape,pattern,floats,prefetch,stream,median_ms,min_ms,gbps" >"$OUT/cl_copy.csv"
say "empty-kernel floor (3 runs of 200)"
"${CLPIN[@]}" "$BIN/empty_kernel" --csv >"$OUT/empty_kernel.csv"
for run in 2 3; do
  "${CLPIN[@]}" "$BIN/empty_kernel" --csv | tail -n +2 >>"$OUT/empty_kernel.csv"
done

say "start-up, cold (empty POCL_CACHE_DIR) and warm (same directory again), 3 of each"
echo "kind,impl,shape,layout,mode,create_ms,buffers_ms,prepare_ms,first_call_ms,total_ms,second_call_ms" >"$OUT/startup.csv"
for run in 1 2 3; do
  cache=$(mktemp -d)
  for kind in cold warm; do
    POCL_CACHE_DIR="$cache" "${CLPIN[@]}" "$BIN/clbn_bench" --shape 32x64x56x56 --mode train --startup --csv --no-header \
      2>>"$LOG" | sed "s/^/$kind,/" >>"$OUT/startup.csv"
  done
  rm -rf "$cache"
done

# --- the suite -------------------------------------------------------------------------
# Whether a shape's float32 tensor has BIG16_BYTES or more.
# The number of elements of a shape ("32x64x56x56").
elements() {
  local IFS=x count=1 d
  for d in $1; do count=$((count * d)); done
  echo "$count"
}
big16() {
  [ $((4 * $(elements "$1"))) -ge "$BIG16_BYTES" ]
}
# The minimal passes (cl_copy --pattern all, or PATTERN) over `cl_copy`
# arguments $2..., recorded in cl_copy.csv as shape $1: plain, with clbn's
# software prefetch, and with prefetch and streaming stores (the two last
# only where the device compiles them: PoCL); each bound takes the fastest
# variant.
minimal_passes() {
  local label=$1 flags
  shift
  for flags in "" "--prefetch" "--prefetch --stream"; do
    # shellcheck disable=SC2086
    "${CLPIN[@]}" "$BIN/cl_copy" "$@" --reps "$COPY_REPS" --pattern "${PATTERN:-all}" $flags --csv --no-header \
      2>>"$LOG" | sed "s|^|$round,$label,|" >>"$OUT/cl_copy.csv" || say "cl_copy $label $flags failed (see $LOG)"
  done
}
TUNING_DB="$OUT/tuning.db" # throw-away: the tuned runs' database (scripts/tuning_ship.py reads it)
rm -f "$TUNING_DB"
RES="$OUT/results.csv"
echo "impl,shape,n,c,s,layout,mode,iters,median_ms,min_ms,bytes,gbps,pct_copy_bw,cores,kernels,verify,plan" >"$RES"
COMMON=(--iters "$ITERS" --warmup "$WARMUP" --max-seconds "$MAX_SECONDS" --csv --no-header)
start=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  VERIFY=()
  [ "$round" = 1 ] && VERIFY=(--verify)
  for shape in "${SHAPES[@]}"; do
    wait_quiet "round $round $shape"
    # the minimal passes on this shape, right before clbn's runs of it
    say "round $round/$ROUNDS, $shape: minimal passes (cl_copy)"
    minimal_passes "$shape" --shape "$shape"
    say "round $round/$ROUNDS, $shape: clbn${VERIFY:+ (with --verify)}"
    for layout in nchw nhwc; do
      for mode in train infer backward; do
        rc=0
        CLBN_TUNING_DB=off "${CLPIN[@]}" "$BIN/clbn_bench" --shape "$shape" --layout "$layout" --mode "$mode" "${VERIFY[@]}" --bw "$BW" \
          "${COMMON[@]}" >>"$RES" 2>>"$LOG" || rc=$?
        case $rc in
          0) ;;
          3) say "clbn $shape $layout $mode: VERIFICATION FAILED (see $LOG)" ;;
          *) say "clbn $shape $layout $mode: failed with status $rc (see $LOG)" ;;
        esac
        [ "$TUNE_MS" = 0 ] && continue
        # tuned: round 1 tunes (recorded in $TUNING_DB), later rounds' plans read it
        TUNE=(--plan)
        [ "$round" = 1 ] && TUNE=(--tune "$TUNE_MS")
        rc=0
        CLBN_TUNING_DB="$TUNING_DB" "${CLPIN[@]}" "$BIN/clbn_bench" --shape "$shape" --layout "$layout" --mode "$mode" \
          "${TUNE[@]}" --label clbn-tuned "${VERIFY[@]}" --bw "$BW" "${COMMON[@]}" >>"$RES" 2>>"$LOG" || rc=$?
        [ $rc = 0 ] || say "clbn tuned $shape $layout $mode: failed with status $rc (see $LOG)"
      done
    done
    if [ ${#DTYPES16[@]} -gt 0 ] && [ "$round" -le "$PEER_ROUNDS" ] && big16 "$shape"; then
      # the 16-bit types' own bound: the minimal passes over as many bytes
      # (half the float32 elements), recorded as shape "$shape/2"
      say "round $round/$ROUNDS, $shape: minimal passes over half the bytes (cl_copy)"
      minimal_passes "$shape/2" --floats $(($(elements "$shape") / 2))
      # and a statistics pass as stable as clbn's over the float16 tensor
      # (cl_copy's stats16: where it is slower than read, the 16-bit
      # statistics are bound by their operations; make_table.py, stable16)
      PATTERN=stats16 minimal_passes "$shape/2" --floats $(($(elements "$shape") / 2))
      say "round $round/$ROUNDS, $shape: clbn in ${DTYPES16[*]}${VERIFY:+ (with --verify)}"
      for dtype in "${DTYPES16[@]}"; do
        for layout in nchw nhwc; do
          for mode in train infer backward; do
            rc=0
            CLBN_TUNING_DB=off "${CLPIN[@]}" "$BIN/clbn_bench" --shape "$shape" --layout "$layout" --mode "$mode" --dtype "$dtype" \
              "${VERIFY[@]}" --bw "$BW" --iters "$ITERS" --warmup "$WARMUP16" \
              --max-seconds "$MAX_SECONDS16" --csv --no-header >>"$RES" 2>>"$LOG" || rc=$?
            case $rc in
              0) ;;
              3) say "clbn $dtype $shape $layout $mode: VERIFICATION FAILED (see $LOG)" ;;
              *) say "clbn $dtype $shape $layout $mode: failed with status $rc (see $LOG)" ;;
            esac
          done
        done
      done
    fi
    if [ $HAVE_TORCH = 1 ] && [ "$round" -le "$PEER_ROUNDS" ]; then
      say "round $round/$ROUNDS, $shape: PyTorch"
      "$PY" bench/peer_torch.py --shape "$shape" --layouts nchw,nhwc --modes train,infer,backward \
        "${COMMON[@]}" >>"$RES" 2>>"$LOG" || say "peer_torch $shape failed (see $LOG)"
    fi
    if [ $HAVE_DNNL = 1 ] && [ "$round" -le "$PEER_ROUNDS" ]; then
      say "round $round/$ROUNDS, $shape: oneDNN"
      for layout in nchw nhwc nChw8c; do
        for mode in train infer backward; do
          "$BIN/peer_onednn" --shape "$shape" --layout "$layout" --mode "$mode" "${COMMON[@]}" \
            >>"$RES" 2>>"$LOG" || say "peer_onednn $shape $layout $mode failed (see $LOG)"
        done
      done
    fi
  done
done
say "suite done in $(( $(date +%s) - start )) s"

# --- ResNet-50 at batch 32: every distinct BN shape once (make_table.py sums
# time x count over the 53 layers), clbn untuned and tuned, and the peers ------
if [ $RESNET = 1 ]; then
  RN="$OUT/resnet50.csv"
  echo "impl,shape,n,c,s,layout,mode,iters,median_ms,min_ms,bytes,gbps,pct_copy_bw,cores,kernels,verify" >"$RN"
  RCOMMON=(--iters "$ITERS" --warmup 3 --max-seconds "$RESNET_SECONDS" --csv --no-header)
  rstart=$(date +%s)
  for entry in "${RESNET_SHAPES[@]}"; do
    shape=${entry%%:*}
    wait_quiet "resnet50 $shape"
    say "ResNet-50, $shape (x${entry##*:}): clbn, clbn tuned$([ $HAVE_TORCH = 1 ] && echo ", PyTorch")$([ $HAVE_DNNL = 1 ] && echo ", oneDNN")"
    for layout in nchw nhwc; do
      for mode in infer train backward; do
        CLBN_TUNING_DB=off "${CLPIN[@]}" "$BIN/clbn_bench" --shape "$shape" --layout "$layout" --mode "$mode" --bw "$BW" \
          "${RCOMMON[@]}" >>"$RN" 2>>"$LOG" || say "clbn $shape $layout $mode failed (see $LOG)"
        if [ "$TUNE_MS" != 0 ]; then
          CLBN_TUNING_DB="$TUNING_DB" "${CLPIN[@]}" "$BIN/clbn_bench" --shape "$shape" --layout "$layout" --mode "$mode" \
            --tune "$TUNE_MS" --label clbn-tuned --bw "$BW" "${RCOMMON[@]}" >>"$RN" 2>>"$LOG" ||
            say "clbn tuned $shape $layout $mode failed (see $LOG)"
        fi
        if [ $HAVE_DNNL = 1 ]; then
          "$BIN/peer_onednn" --shape "$shape" --layout "$layout" --mode "$mode" "${RCOMMON[@]}" \
            >>"$RN" 2>>"$LOG" || say "peer_onednn $shape $layout $mode failed (see $LOG)"
        fi
      done
    done
    if [ $HAVE_TORCH = 1 ]; then
      "$PY" bench/peer_torch.py --shape "$shape" --layouts nchw,nhwc --modes train,infer,backward \
        "${RCOMMON[@]}" >>"$RN" 2>>"$LOG" || say "peer_torch $shape failed (see $LOG)"
    fi
  done
  say "ResNet-50 pass done in $(( $(date +%s) - rstart )) s"
fi
say "all done in $(( $(date +%s) - start )) s after the limits; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load end: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); waited ${waited} s for a quiet machine; $BUSY_RUNS of $QUIET_CHECKS parts (limits, shape runs, ResNet-50 shapes) started with other processes above ${QUIET_PCT}% of the CPUs" >>"$OUT/machine.txt"

"$PY" bench/make_table.py "$OUT"
say "wrote $OUT/table.md and $OUT/plot.png"
