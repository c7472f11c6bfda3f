/*
 * Compile check: clbn.h in strict C99 (-std=c99 -pedantic, warnings as errors),
 * and a link check of the exported functions. Run as a test, it also checks
 * that the library's version matches the header's.
 */
#include "clbn.h"

#include <stdio.h>

int main(void)
{
    /* Taking each function's address makes the link fail if one is missing. */
    void (*const unused[])(void) = {
        (void (*)(void))clbn_status_string,       (void (*)(void))clbn_status_name,
        (void (*)(void))clbn_version_number,      (void (*)(void))clbn_context_create,
        (void (*)(void))clbn_context_create_default,
        (void (*)(void))clbn_context_get_cl_context,
        (void (*)(void))clbn_context_get_device,  (void (*)(void))clbn_context_get_queue,
        (void (*)(void))clbn_context_prepare,     (void (*)(void))clbn_context_get_build_log,
        (void (*)(void))clbn_context_release,     (void (*)(void))clbn_forward_training,
        (void (*)(void))clbn_forward_training_ex, (void (*)(void))clbn_forward_inference,
    };
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, 1, 1};
    (void)unused;
    (void)desc;
    if (clbn_version_number() != CLBN_VERSION_NUMBER) {
        printf("library version %u, header version %u\n", clbn_version_number(),
               (unsigned)CLBN_VERSION_NUMBER);
        return 1;
    }
    printf("clbn %s, C99: %s\n", CLBN_VERSION_STRING, clbn_status_string(CLBN_SUCCESS));
    return 0;
}
