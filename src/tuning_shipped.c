/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; scripts/tuning_ship.py turns
 * clbn-tune's database files into lines of this form). Kernels field "any":
 * valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    NULL};
