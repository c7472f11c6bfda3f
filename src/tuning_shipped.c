/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; scripts/tuning_ship.py turns
 * clbn-tune's database files into lines of this form). Kernels field "any":
 * valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    /* None yet. Entries measured on 2026-12-04 on a 2-core AMD EPYC VM
     * (PoCL 3.1, pthread-skylake-avx512-AMD EPYC) were left out: the machine
     * was shared with other builds (load average 6-9) and one configuration
     * timed twice varied by 0.33-1.75x, so none of the tuner's choices was
     * shown to be faster. Measure on a quiet machine with `clbn-tune`, keep
     * the classes that win again when timed alternately (scripts/tuning_ship.py),
     * and paste the lines here. */
    NULL};
