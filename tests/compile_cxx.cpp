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
    clbn_layer_config cfg = clbn_layer_config_default(64);
    if (cfg.num_features != 64 || cfg.momentum != 0.1) {
        std::printf("unexpected layer defaults from C++\n");
        return 1;
    }
    std::printf("clbn from C++: %s\n", name);
    return 0;
}
