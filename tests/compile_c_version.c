/*
 * Compile check: clbn.h included with no CL_TARGET_OPENCL_VERSION defined
 * sets it to 120 before <CL/cl.h>, so the OpenCL headers print no
 * "Defaulting to 300" message in the user's build.
 */
#include "clbn.h"

#if !defined(CL_TARGET_OPENCL_VERSION) || CL_TARGET_OPENCL_VERSION != 120
#error "clbn.h did not define CL_TARGET_OPENCL_VERSION as 120"
#endif

int main(void)
{
    return clbn_version_number() > 0 ? 0 : 1;
}
