/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; scripts/tuning_ship.py turns
 * clbn-tune's database files into lines of this form). Kernels field "any":
 * valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    /* 2026-12-04 13:00 UTC, a 2-core AMD EPYC VM (PoCL 3.1,
     * pthread-skylake-avx512-AMD EPYC, copy bandwidth 71.3 GB/s in that run):
     * bash bench/run_suite.sh tuned every suite and ResNet-50 configuration
     * (800 ms each) at commit 8ba3349 (these kernels but for prefetch
     * targets); scripts/tuning_ship.py --suite kept the 8 classes whose every
     * configuration was again below 0.9x the untuned time when re-timed in the
     * second round (bench/results/2026-12-04-b/). Single runs on a shared VM:
     * a starting point; tune on your machine (CLBN_TUNE=1). */
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_infer f0 e21 c8 s3 a0\tnorm_group=8\t0.3891\tcf8b6a05\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e22 c8 s4 a1\tgroup=8\t2.1439\t45de2340\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc bwd f0 e22 c8 s4 a1\tsplits_per_cu=32\t2.5164\td4af4169\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e20 c8 s3 a1\tnorm_group=16\t0.1915\t75bd72ef\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e22 c10 s3 a0\tgroup=16 channel_bytes=0\t2.0348\t9b5212ee\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e21 c9 s3 a0\tgroup=16 item_elements=1024 channel_bytes=0\t0.8401\t2b2ec4d4\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e21 c9 s3 a1\tnhwc_wide_pixels=4\t0.3387\t446e6c25\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_train f0 e21 c9 s3 a1\tnorm_group=8\t0.6376\t25648672\n",
    NULL};
