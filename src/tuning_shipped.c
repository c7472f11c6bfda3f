/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; scripts/tuning_ship.py turns
 * clbn-tune's database files into lines of this form). Kernels field "any":
 * valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    /* 2026-12-04, a 2-core AMD EPYC VM (PoCL 3.1, pthread-skylake-avx512-AMD EPYC,
     * copy bandwidth 81.4 GB/s): bench/run_suite.sh tuned every suite and ResNet-50
     * configuration (800 ms each); scripts/tuning_ship.py --suite kept the 17
     * classes whose every configuration was again below 0.9x the untuned time
     * when re-timed (bench/results/2026-12-04/). Single runs on a VM: treat as
     * a starting point, and tune on your machine (CLBN_TUNE=1). */
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e21 c8 s3 a0\trows_spatial=0\t0.5414\te9d21cb0\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e22 c6 s4 a1\trows_spatial=4096\t0.6924\t64720067\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_train f0 e22 c6 s4 a1\tgroup=16\t1.2229\te299f571\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_train f0 e23 c7 s4 a1\tgroup=8\t2.2457\te7e5791c\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e21 c7 s4 a1\titem_elements=1024\t0.2812\t993987dc\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e21 c7 s4 a1\tgroup=16\t0.8417\t9034fa8c\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e22 c8 s4 a1\titem_elements=1024\t0.6365\t773d25b5\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e20 c8 s3 a0\trows_spatial=0\t0.1578\t2fe80ca8\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e20 c8 s3 a0\tgroup=8\t0.3737\t792d599d\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc bwd f0 e20 c8 s3 a1\tnorm_group=8\t0.4215\t015cfbdf\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e22 c10 s3 a0\tflat_item=256\t0.8718\tf2b088c4\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e22 c10 s3 a0\tgroup=16\t2.4231\t87d9762f\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e22 c10 s3 a1\tnhwc_wide_pixels=2\t0.7924\t0a6cb2ed\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e21 c9 s3 a0\tgroup=16\t0.8426\t05bb71fa\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc bwd f0 e21 c9 s3 a1\tnorm_group=8\t1.0480\t08e17d1c\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e21 c11 s2 a0\tnorm_group=32 item_elements=256 rows_spatial=0\t0.3724\ta6bcbcaa\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_train f0 e21 c11 s2 a1\tnorm_group=8 tile_target=131072\t0.7920\t51f3c851\n",
    NULL};
