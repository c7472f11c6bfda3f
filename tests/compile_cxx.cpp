// Compile check: clbn.h from C++ (extern "C" linkage, no C-only constructs).
#include "clbn.h"

#include <cstdio>
#include <cstring>

int main()
{
    const char *name = clbn_status_name(CLBN_ERROR_INVALID_EPSILON);
    if (std::strcmp(name, "CLBN_ERROR_INVALID_EPSILON") != 0) {
        std::printf("unexpected status name from C++: %s\n", name);
        return 1;
    }
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 3, 4};
    static_cast<void>(desc);
    std::printf("clbn from C++: %s\n", name);
    return 0;
}
