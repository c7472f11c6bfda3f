/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; scripts/tuning_ship.py turns
 * clbn-tune's database files into lines of this form). Kernels field "any":
 * valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    /* 2026-12-04 16:56 UTC, a 2-core AMD EPYC VM (PoCL 3.1,
     * pthread-skylake-avx512-AMD EPYC, copy bandwidth 44.6 GB/s in that run):
     * bash bench/run_suite.sh tuned every suite and ResNet-50 configuration
     * (800 ms each) at commit cfcff3b; scripts/tuning_ship.py --suite kept
     * the 10 classes whose every configuration was again below 0.9x the
     * untuned time when re-timed in the second round
     * (bench/results/2026-12-04-c/). Two of them (NCHW and NHWC backward of
     * 2^22-value tensors of 256 channels) were also picked at 13:00 UTC.
     * Single runs on a shared VM: a starting point; tune on your machine
     * (CLBN_TUNE=1). */
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_train f0 e21 c1 s5 a1\titem_elements=4096\t0.5380\t486979a8\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e21 c1 s5 a0\titem_elements=2048 norm_prefetch=32768\t0.3705\t54ddba5e\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_train f0 e22 c6 s4 a1\tgroup=8\t1.6060\tcb0d7e47\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e21 c7 s4 a1\tgroup=32\t0.9542\t521b5442\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw fwd_train f0 e22 c8 s4 a1\tchannel_bytes=0\t1.3335\t9411dc7f\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nchw bwd f0 e22 c8 s4 a1\tgroup=8\t3.5583\tde591843\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e22 c8 s4 a1\tnorm_group=16\t1.0765\t7dffdc85\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc bwd f0 e22 c8 s4 a1\tsplits_per_cu=32\t3.2859\t1290be1c\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_infer f0 e22 c10 s3 a1\tnhwc_wide_pixels=2\t1.4520\t77857687\n",
    "clbn-tuning-1\tany\tPortable Computing Language\tpthread-skylake-avx512-AMD EPYC\t3.1+debian\t2\tf32 nhwc fwd_train f0 e21 c9 s3 a1\tgroup=32\t0.8046\t730a8e06\n",
    NULL};
