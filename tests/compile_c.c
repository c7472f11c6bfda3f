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
        (void (*)(void))clbn_op_desc_init,        (void (*)(void))clbn_forward_inference,
        (void (*)(void))clbn_plan_create,         (void (*)(void))clbn_plan_release,
        (void (*)(void))clbn_plan_execute,        (void (*)(void))clbn_plan_describe,
        (void (*)(void))clbn_backward, (void (*)(void))clbn_backward_inference,
        (void (*)(void))clbn_layer_config_default, (void (*)(void))clbn_layer_create,
        (void (*)(void))clbn_layer_release, (void (*)(void))clbn_layer_set_training,
        (void (*)(void))clbn_layer_is_training, (void (*)(void))clbn_layer_forward,
        (void (*)(void))clbn_layer_backward, (void (*)(void))clbn_layer_read,
        (void (*)(void))clbn_layer_write, (void (*)(void))clbn_layer_get_buffer,
        (void (*)(void))clbn_layer_set_fused_op, (void (*)(void))clbn_layer_forward_ex,
        (void (*)(void))clbn_layer_set_views,
        (void (*)(void))clbn_layer_backward_ex, (void (*)(void))clbn_layer_num_batches_tracked,
        (void (*)(void))clbn_layer_zero_grad, (void (*)(void))clbn_layer_reset_running_stats,
        (void (*)(void))clbn_layer_reset_parameters, (void (*)(void))clbn_layer_save,
        (void (*)(void))clbn_layer_load,
        (void (*)(void))clbn_convert, (void (*)(void))clbn_fold_into_conv,
        (void (*)(void))clbn_layer_fold_into_conv, (void (*)(void))clbn_layer_load_safetensors,
        (void (*)(void))clbn_layer_save_safetensors,
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
