/* Plans against the double reference (plan_check.h). */
#include "plan_check.h"

#include "testutil.h"
#include "reference_backward.h"

#include <stdlib.h>

clbn_plan *pc_make_plan(clbn_op op, const clbn_tensor_desc *d, const char *tuning)
{
    clbn_op_desc od;
    clbn_plan *p = NULL;
    TU_OK(clbn_op_desc_init(&od, op, d));
    TU_OK(clbn_plan_create(tu_ctx(), &od, &p));
    if (tuning)
        TU_OK(clbn_plan_set_tuning(p, tuning));
    return p;
}

void pc_plans_against_reference(const clbn_tensor_desc *desc, uint64_t seed, const char *tuning,
                                int flags)
{
    const clbn_tensor_desc d = *desc;
    const size_t count = tu_count(&d), C = d.c;
    ref_shape sh = tu_ref_shape(&d);
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    float *x = tu_floats(count), *dy = tu_floats(count), *w = tu_floats(C), *b = tu_floats(C);
    float *rm = tu_floats(C), *rv = tu_floats(C), *got = tu_floats(count), *gc = tu_floats(C);
    tu_fill_input(&rng, &d, x, 3.0, 1.0, 2.0);
    tu_fill_uniform(&rng, dy, count, -1, 1);
    tu_fill_uniform(&rng, w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, b, C, -0.5, 0.5);
    tu_fill_uniform(&rng, rm, C, -1, 1);
    tu_fill_uniform(&rng, rv, C, 0.5, 2);
    double *y = tu_doubles(count), *rmo = tu_doubles(C), *rvo = tu_doubles(C);
    double *mean = tu_doubles(C), *invstd = tu_doubles(C), *dx = tu_doubles(count);
    double *dw = tu_doubles(C), *db = tu_doubles(C);
    ck_assert_int_eq(ref_training(&sh, x, w, b, rm, rv, 0.1, 1e-5, REF_UPDATE_PYTORCH, 0, y, rmo,
                                  rvo, mean, invstd),
                     0);
    cl_mem mx = tu_buffer_floats(x, count), mdy = tu_buffer_floats(dy, count);
    cl_mem my = tu_buffer_nan(count), mdx = tu_buffer_nan(count);
    cl_mem mw = tu_buffer_floats(w, C), mb = tu_buffer_floats(b, C);
    cl_mem mrm = tu_buffer_floats(rm, C), mrv = tu_buffer_floats(rv, C);
    cl_mem msm = tu_buffer_nan(C), msi = tu_buffer_nan(C), mdw = tu_buffer_nan(C),
           mdb = tu_buffer_nan(C);
    clbn_plan *fwd = pc_make_plan(CLBN_OP_FORWARD_TRAINING, &d, tuning);
    clbn_plan *bwd = pc_make_plan(CLBN_OP_BACKWARD, &d, tuning);
    const clbn_args fa = {.x = mx, .y = my, .weight = mw, .bias = mb, .running_mean = mrm,
                          .running_var = mrv, .save_mean = msm, .save_invstd = msi,
                          .momentum = 0.1};
    cl_event ev = NULL;
    TU_OK(clbn_plan_execute(fwd, NULL, &fa, 0, NULL, (flags & PC_EVENT) ? &ev : NULL));
    const clbn_args ba = {.x = mx, .dy = mdy, .dx = mdx, .weight = mw, .save_mean = msm,
                          .save_invstd = msi, .dweight = mdw, .dbias = mdb};
    TU_OK(clbn_plan_execute(bwd, NULL, &ba, ev ? 1 : 0, ev ? &ev : NULL, NULL));
    if (ev)
        clReleaseEvent(ev);
    tu_finish();
    tu_read_floats(my, got, count);
    TU_ASSERT_CLOSE("y", got, y, count, 1e-5, 1e-5);
    tu_read_floats(mrm, gc, C);
    TU_ASSERT_CLOSE("running_mean", gc, rmo, C, 1e-5, 1e-6);
    tu_read_floats(mrv, gc, C);
    TU_ASSERT_CLOSE("running_var", gc, rvo, C, 1e-5, 1e-6);
    refb_training(&sh, x, dy, w, mean, invstd, 0, dx, dw, db);
    tu_read_floats(mdx, got, count);
    TU_ASSERT_CLOSE("dx", got, dx, count, 1e-4, 1e-5 * (1.0 + tu_max_abs(dx, count)));
    tu_read_floats(mdw, gc, C);
    TU_ASSERT_CLOSE("dweight", gc, dw, C, 1e-4, 1e-4);
    tu_read_floats(mdb, gc, C);
    TU_ASSERT_CLOSE("dbias", gc, db, C, 1e-4, 1e-4);
    clbn_plan_release(fwd);
    clbn_plan_release(bwd);

    if (flags & PC_INFERENCE) {
        /* inference and its backward from the original running statistics */
        tu_write_floats(mrm, rm, C);
        tu_write_floats(mrv, rv, C);
        clbn_plan *inf = pc_make_plan(CLBN_OP_FORWARD_INFERENCE, &d, tuning);
        clbn_plan *binf = pc_make_plan(CLBN_OP_BACKWARD_INFERENCE, &d, tuning);
        const clbn_args ia = {.x = mx, .y = my, .weight = mw, .bias = mb, .running_mean = mrm,
                              .running_var = mrv};
        TU_OK(clbn_plan_execute(inf, NULL, &ia, 0, NULL, NULL));
        const clbn_args bia = {.x = mx, .dy = mdy, .dx = mdx, .weight = mw, .running_mean = mrm,
                               .running_var = mrv, .dweight = mdw, .dbias = mdb};
        TU_OK(clbn_plan_execute(binf, NULL, &bia, 0, NULL, NULL));
        tu_finish();
        ref_inference(&sh, x, w, b, rm, rv, 1e-5, 0, y);
        tu_read_floats(my, got, count);
        TU_ASSERT_CLOSE("inference y", got, y, count, 1e-5, 1e-5);
        refb_inference(&sh, x, dy, w, rm, rv, 1e-5, 0, dx, dw, db);
        tu_read_floats(mdx, got, count);
        TU_ASSERT_CLOSE("inference dx", got, dx, count, 1e-5, 1e-6);
        tu_read_floats(mdw, gc, C);
        TU_ASSERT_CLOSE("inference dweight", gc, dw, C, 1e-4, 1e-4);
        tu_read_floats(mdb, gc, C);
        TU_ASSERT_CLOSE("inference dbias", gc, db, C, 1e-4, 1e-4);
        clbn_plan_release(inf);
        clbn_plan_release(binf);
    }

    cl_mem all[] = {mx, mdy, my, mdx, mw, mb, mrm, mrv, msm, msi, mdw, mdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        tu_release(all[i]);
    free(x), free(dy), free(w), free(b), free(rm), free(rv), free(got), free(gc);
    free(y), free(rmo), free(rvo), free(mean), free(invstd), free(dx), free(dw), free(db);
}
