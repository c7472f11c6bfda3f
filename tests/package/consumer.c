/* Builds against an installed clbn (find_package or pkg-config) and checks the
 * version and the status table: proves the installed package is usable. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    if (clbn_version_number() != CLBN_VERSION_NUMBER) {
        fprintf(stderr, "header %u, library %u\n", (unsigned)CLBN_VERSION_NUMBER, clbn_version_number());
        return 1;
    }
    if (strcmp(clbn_status_name(CLBN_ERROR_INVALID_EPSILON), "CLBN_ERROR_INVALID_EPSILON") != 0)
        return 1;
    printf("clbn %s installed and usable\n", CLBN_VERSION_STRING);
    return 0;
}
