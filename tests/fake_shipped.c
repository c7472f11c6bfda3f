/* A stand-in for src/tuning_shipped.c in the library check_shipped links
 * (tests/CMakeLists.txt builds clbn again with this file instead): one
 * shipped line the test writes at run time, since an entry's key names the
 * device the test runs on. */
#include <stdio.h>

extern const char *const clbn__tuning_shipped[];
static char fake_line[4096];
const char *const clbn__tuning_shipped[] = {fake_line, NULL};

void fake_shipped_set(const char *line);
void fake_shipped_set(const char *line)
{
    snprintf(fake_line, sizeof fake_line, "%s", line);
}
