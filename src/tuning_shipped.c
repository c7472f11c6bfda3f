/* The tuning database compiled into the library: entries measured on the
 * devices this project has met (docs/tuning.md; `clbn-tune --shipped` prints
 * lines in this form). Kernels field "any": valid while the parameters parse. */
#include <stddef.h>

extern const char *const clbn__tuning_shipped[];
const char *const clbn__tuning_shipped[] = {
    NULL};
