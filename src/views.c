/* Tensor views and offsets (clbn_tensor_view, clbn_args' *_offset).
 *
 * Plan creation (clbn__views_plan) resolves every used tensor's view to
 * explicit strides and rejects output views whose elements overlap. A view
 * equal to the dense layout is no view at all: such a plan and an execution
 * without offsets take the operation's runner directly, exactly as before.
 *
 * Otherwise an execution (clbn__views_execute):
 *   1. checks the queue and wait list, every buffer (valid, of the context),
 *      that each view's furthest element and each vector's last value lie
 *      inside its cl_mem (CLBN_ERROR_VIEW_OUT_OF_BOUNDS) and that no output
 *      overlaps another argument other than through an identical view in an
 *      allowed in-place pair (CLBN_ERROR_VIEW_ALIASING);
 *   2. gives each argument that has a view, an offset or a cl_mem shared with
 *      another argument a dense temporary (one per distinct region), and
 *      lets the operation's runner check those arguments without enqueueing
 *      anything (a copy of the plan with the empty path);
 *   3. enqueues the copies in (cl/views.cl's gather for tensors,
 *      clEnqueueCopyBuffer for the per-channel vectors), the runner on the
 *      temporaries, then the copies out (scatter, clEnqueueCopyBuffer).
 * The dense kernels thus compute exactly what they compute on dense tensors:
 * the results are bitwise those of the same data laid out densely.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

enum { T_X, T_Y, T_Z, T_DY, T_DX, T_DZ, T_COUNT };
enum { V_W, V_B, V_RM, V_RV, V_SM, V_SI, V_DW, V_DB, V_COUNT };
enum { SLOTS = T_COUNT + V_COUNT };
enum { R_UNUSED = 0, R_IN = 1, R_OUT = 2, R_INOUT = 3 };

static int is_forward(clbn_op op)
{
    return op == CLBN_OP_FORWARD_TRAINING || op == CLBN_OP_FORWARD_INFERENCE;
}

static int is_public(clbn_op op)
{
    return (unsigned)op <= CLBN_OP_BACKWARD_INFERENCE;
}

/* What the operation does with each argument (slots: tensors, then vectors). */
static void roles(const clbn_op_desc *d, int r[SLOTS])
{
    memset(r, 0, SLOTS * sizeof *r);
    const int add = d->fused_op == CLBN_FUSED_ADD_RELU;
    if (is_forward(d->op)) {
        r[T_X] = R_IN;
        r[T_Y] = R_OUT;
        r[T_Z] = add ? R_IN : R_UNUSED;
        r[T_COUNT + V_W] = r[T_COUNT + V_B] = R_IN;
        if (d->op == CLBN_OP_FORWARD_TRAINING) {
            r[T_COUNT + V_RM] = r[T_COUNT + V_RV] = R_INOUT;
            r[T_COUNT + V_SM] = r[T_COUNT + V_SI] = R_OUT;
        } else {
            r[T_COUNT + V_RM] = r[T_COUNT + V_RV] = R_IN;
        }
    } else {
        r[T_X] = R_IN;
        r[T_Y] = d->fused_op != CLBN_FUSED_NONE ? R_IN : R_UNUSED;
        r[T_DY] = R_IN;
        r[T_DX] = R_OUT;
        r[T_DZ] = add ? R_OUT : R_UNUSED;
        r[T_COUNT + V_W] = R_IN;
        if (d->op == CLBN_OP_BACKWARD)
            r[T_COUNT + V_SM] = r[T_COUNT + V_SI] = R_IN;
        else
            r[T_COUNT + V_RM] = r[T_COUNT + V_RV] = R_IN;
        r[T_COUNT + V_DW] = r[T_COUNT + V_DB] = R_OUT;
    }
}

static const clbn_tensor_view *desc_view(const clbn_op_desc *d, int t)
{
    const clbn_tensor_view *v[T_COUNT] = {&d->x_view,  &d->y_view,  &d->z_view,
                                          &d->dy_view, &d->dx_view, &d->dz_view};
    return v[t];
}

static clbn_tensor_view dense_view(const clbn_tensor_desc *t)
{
    clbn_tensor_view v;
    if (t->layout == CLBN_LAYOUT_NHWC) {
        v.stride_n = t->spatial * t->c;
        v.stride_c = 1;
        v.stride_s = t->c;
    } else {
        v.stride_n = t->c * t->spatial;
        v.stride_c = t->spatial;
        v.stride_s = 1;
    }
    return v;
}

static int same_view(const clbn_tensor_view *a, const clbn_tensor_view *b)
{
    return a->stride_n == b->stride_n && a->stride_c == b->stride_c && a->stride_s == b->stride_s;
}

/* The furthest element's index, or 0 with *overflow set. */
static size_t extent(const clbn_tensor_desc *t, const clbn_tensor_view *v, int *overflow)
{
    const size_t d[3] = {t->n, t->c, t->spatial}, s[3] = {v->stride_n, v->stride_c, v->stride_s};
    size_t e = 0;
    for (int i = 0; i < 3; ++i) {
        if (d[i] == 0)
            return 0;
        const size_t k = d[i] - 1;
        if (k && s[i] > (SIZE_MAX - e) / k) {
            *overflow = 1;
            return 0;
        }
        e += k * s[i];
    }
    return e;
}

/* The dimensions of size > 1 ordered by stride, largest first. */
static int sorted_dims(const clbn_tensor_desc *t, const clbn_tensor_view *v, size_t st[3],
                       size_t dim[3])
{
    const size_t d[3] = {t->n, t->c, t->spatial}, s[3] = {v->stride_n, v->stride_c, v->stride_s};
    int k = 0;
    for (int i = 0; i < 3; ++i)
        if (d[i] > 1) {
            int j = k++;
            while (j > 0 && st[j - 1] < s[i]) {
                st[j] = st[j - 1];
                dim[j] = dim[j - 1];
                --j;
            }
            st[j] = s[i];
            dim[j] = d[i];
        }
    return k;
}

/* Whether no two elements of the view share a place: ordered by stride, each
 * dimension's stride steps past the whole extent of the smaller ones. (Some
 * interleaved views are one-to-one without nesting; they are refused too.) */
static int nests(const clbn_tensor_desc *t, const clbn_tensor_view *v)
{
    size_t st[3], dim[3];
    const int k = sorted_dims(t, v, st, dim);
    size_t below = 0; /* extent of the smaller dimensions */
    for (int i = k - 1; i >= 0; --i) {
        if (st[i] <= below)
            return 0;
        if (st[i] > (SIZE_MAX - below) / (dim[i] - 1))
            return 0;
        below += (dim[i] - 1) * st[i];
    }
    return 1;
}

clbn_status clbn__views_plan(clbn_plan *plan)
{
    const clbn_op_desc *d = &plan->desc;
    const clbn_tensor_desc *t = &d->tensor;
    plan->has_views = 0;
    const clbn_tensor_view dense = dense_view(t);
    for (int i = 0; i < T_COUNT; ++i)
        plan->views[i] = dense;
    if (!is_public(d->op))
        return CLBN_SUCCESS; /* internal geometry plans: dense */
    int r[SLOTS];
    roles(d, r);
    for (int i = 0; i < T_COUNT; ++i) {
        if (r[i] == R_UNUSED)
            continue;
        clbn_tensor_view v = *desc_view(d, i);
        if (v.stride_n == 0 && v.stride_c == 0 && v.stride_s == 0)
            v = dense;
        /* a stride of a dimension of size 1 never counts */
        if (t->n <= 1)
            v.stride_n = dense.stride_n;
        if (t->c <= 1)
            v.stride_c = dense.stride_c;
        if (t->spatial <= 1)
            v.stride_s = dense.stride_s;
        int overflow = 0;
        const size_t e = extent(t, &v, &overflow);
        if (overflow || e >= SIZE_MAX / 8)
            return CLBN_ERROR_DIMENSION_OVERFLOW;
        if ((r[i] & R_OUT) && t->n > 0 && !nests(t, &v))
            return CLBN_ERROR_VIEW_OVERLAP;
        plan->views[i] = v;
        if (!same_view(&v, &dense))
            plan->has_views = 1;
    }
    return CLBN_SUCCESS;
}

int clbn__views_channel_blocks(const clbn_plan *plan, clbn_op_desc *inner)
{
    const clbn_op_desc *d = &plan->desc;
    const clbn_tensor_desc *t = &d->tensor;
    /* (S = 1: such a view is also a row view, CNHW, which the row kernels
     * read bitwise as dense; keep that) */
    if (!plan->has_views || !is_public(d->op) || t->n < 2 || t->spatial < 2)
        return 0;
    int r[SLOTS];
    roles(d, r);
    *inner = *d;
    inner->tensor.n = 1;
    inner->tensor.spatial = t->n * t->spatial;
    inner->tensor.layout = CLBN_LAYOUT_NCHW;
    inner->virtual_batch_size = 0;
    clbn_tensor_view *iv[T_COUNT] = {&inner->x_view,  &inner->y_view,  &inner->z_view,
                                     &inner->dy_view, &inner->dx_view, &inner->dz_view};
    for (int i = 0; i < T_COUNT; ++i) {
        const clbn_tensor_view *v = &plan->views[i];
        memset(iv[i], 0, sizeof *iv[i]);
        if (r[i] == R_UNUSED)
            continue;
        /* sample n of spatial position s at n + s*N within its channel */
        if (v->stride_n != 1 || v->stride_s != t->n ||
            (t->c > 1 && v->stride_c < t->n * t->spatial))
            return 0;
        iv[i]->stride_n = t->c * t->n * t->spatial; /* one sample: never used */
        iv[i]->stride_c = t->c > 1 ? v->stride_c : t->n * t->spatial;
        iv[i]->stride_s = 1;
    }
    return 1;
}

static size_t arg_offset(const clbn_args *a, int slot)
{
    const size_t o[SLOTS] = {a->x_offset,           a->y_offset,          a->z_offset,
                             a->dy_offset,          a->dx_offset,         a->dz_offset,
                             a->weight_offset,      a->bias_offset,       a->running_mean_offset,
                             a->running_var_offset, a->save_mean_offset,  a->save_invstd_offset,
                             a->dweight_offset,     a->dbias_offset};
    return o[slot];
}

static cl_mem *arg_mem(clbn_args *a, int slot)
{
    cl_mem *m[SLOTS] = {&a->x,           &a->y,         &a->z,        &a->dy,
                        &a->dx,          &a->dz,        &a->weight,   &a->bias,
                        &a->running_mean, &a->running_var, &a->save_mean, &a->save_invstd,
                        &a->dweight,     &a->dbias};
    return m[slot];
}

clbn_offsets clbn__offsets(const clbn_args *a)
{
    clbn_offsets o;
    clbn_args b = *a;
    cl_ulong *f[SLOTS] = {&o.x,      &o.y,    &o.z,            &o.dy,          &o.dx,
                          &o.dz,     &o.weight, &o.bias,       &o.running_mean, &o.running_var,
                          &o.save_mean, &o.save_invstd, &o.dweight, &o.dbias};
    for (int i = 0; i < SLOTS; ++i)
        *f[i] = *arg_mem(&b, i) ? (cl_ulong)arg_offset(a, i) : 0;
    return o;
}

int clbn__views_in_place(const clbn_plan *plan)
{
    const clbn_op_desc *d = &plan->desc;
    if (d->tensor.layout != CLBN_LAYOUT_NCHW)
        return 0;
    int r[SLOTS];
    roles(d, r);
    for (int i = 0; i < T_COUNT; ++i)
        if (r[i] != R_UNUSED &&
            (plan->views[i].stride_s != 1 || /* rows not contiguous */
             (plan->elements > 0 && !nests(&d->tensor, &plan->views[i]))))
            return 0; /* (an input that repeats elements spans less than a dense
                       * tensor, which the runners' buffer checks expect) */
    if (plan->path == CLBN_PATH_EMPTY)
        return 1; /* nothing to read or write */
    if (plan->path == CLBN_PATH_ONE_KERNEL)
        return plan->one_is_channel; /* cl/channel.cl, not cl/small.cl */
    /* the tiled reductions and the 2-D elementwise passes, not the short-row ones */
    const clbn_kernel_id sk = plan->stats.launch.kernel, nk = plan->norm.launch.kernel;
    if (d->op != CLBN_OP_FORWARD_INFERENCE && sk != CLBN_K_STATS_NCHW &&
        sk != CLBN_K_BWD_REDUCE_NCHW)
        return 0;
    /* the flat walk takes row views when no 8-value vector crosses a row */
    return nk == CLBN_K_NORMALIZE_NCHW || nk == CLBN_K_INFERENCE_NCHW || nk == CLBN_K_BWD_DX_NCHW ||
           (nk == CLBN_K_NORMALIZE_FLAT && d->tensor.spatial % 8 == 0);
}

int clbn__views_needed(const clbn_plan *plan, const clbn_args *a)
{
    if (plan->has_views)
        return 1;
    for (int i = 0; i < SLOTS; ++i)
        if (arg_offset(a, i) != 0)
            return 1;
    return 0;
}

/* One argument's region of its buffer, in elements of its own size. */
typedef struct region {
    cl_mem mem;
    size_t offset, last; /* first and last element (last: offset + extent) */
    size_t unit;         /* bytes per element */
    int tensor;          /* with the view below */
    clbn_tensor_view view;
} region;

static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Whether d = sum k_i*st_i for some |k_i| < dim_i, with st nested (largest
 * first): the remainder after the largest dimension lies within the smaller
 * ones' extent, which is below st[0], so k_0 is floor(d/st_0) or one more. */
static int reach(long long d, const size_t *st, const size_t *dim, int k)
{
    if (k == 0)
        return d == 0;
    const long long s = (long long)st[0], m = (long long)dim[0] - 1;
    const long long q = floor_div(d, s);
    for (long long c = q; c <= q + 1; ++c)
        if (c >= -m && c <= m && reach(d - c * s, st + 1, dim + 1, k - 1))
            return 1;
    return 0;
}

/* Whether two regions of one buffer share a byte. Two tensor views with the
 * same (nested) strides are compared exactly; anything else by the byte
 * ranges they span. */
static int overlaps(const clbn_tensor_desc *t, const region *a, const region *b)
{
    const size_t a0 = a->offset * a->unit, a1 = (a->last + 1) * a->unit;
    const size_t b0 = b->offset * b->unit, b1 = (b->last + 1) * b->unit;
    if (a1 <= b0 || b1 <= a0)
        return 0;
    if (a->tensor && b->tensor && same_view(&a->view, &b->view) && nests(t, &a->view)) {
        size_t st[3], dim[3];
        const int k = sorted_dims(t, &a->view, st, dim);
        return reach((long long)a->offset - (long long)b->offset, st, dim, k);
    }
    return 1;
}

static int identical(const region *a, const region *b)
{
    return a->mem == b->mem && a->tensor && b->tensor && a->offset == b->offset &&
           same_view(&a->view, &b->view);
}

/* The in-place pairs the operations allow (output, input). */
static int in_place_allowed(int out, int in)
{
    return (out == T_Y && (in == T_X || in == T_Z)) ||
           ((out == T_DX || out == T_DZ) && in == T_DY);
}

/* Rows of a dense tensor, as cl/views.cl walks them. */
typedef struct walk {
    cl_ulong sa, sb, sj, A, B, J, rows, run;
    cl_int a_fast; /* adjacent work-items take adjacent a (its view stride is the smaller) */
} walk;

static walk make_walk(const clbn_tensor_desc *t, const clbn_tensor_view *v)
{
    walk w;
    if (t->layout == CLBN_LAYOUT_NHWC) {
        w.sa = v->stride_n;
        w.sb = v->stride_s;
        w.sj = v->stride_c;
        w.B = t->spatial;
        w.J = t->c;
    } else {
        w.sa = v->stride_n;
        w.sb = v->stride_c;
        w.sj = v->stride_s;
        w.B = t->c;
        w.J = t->spatial;
    }
    w.A = t->n;
    w.rows = w.A * w.B;
    w.run = w.J < 512 ? w.J : 512;
    w.a_fast = w.A > 1 && w.B > 1 && w.sa < w.sb;
    return w;
}

static clbn_launch copy_launch(const clbn_program *prog, clbn_kernel_id k, const walk *w)
{
    clbn_launch l;
    memset(&l, 0, sizeof l);
    l.kernel = k;
    l.dims = 2;
    size_t g = 1;
    while (g * 2 <= 64 && g * 2 <= prog->max_work_group[k])
        g *= 2;
    l.local[0] = 1;
    l.local[1] = g;
    l.global[0] = (size_t)((w->J + w->run - 1) / w->run);
    l.global[1] = (size_t)((w->rows + g - 1) / g * g);
    return l;
}

typedef struct temp {
    cl_mem mem;
    int first; /* the slot that made it */
} temp;

static clbn_status temps_get(clbn_context *ctx, cl_command_queue queue, size_t bytes, cl_mem *out);

static void release_events(cl_event *ev, int n)
{
    for (int i = 0; i < n; ++i)
        if (ev[i])
            clReleaseEvent(ev[i]);
}

clbn_status clbn__views_execute(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                                cl_uint num_wait, const cl_event *wait, cl_event *event)
{
    clbn_context *ctx = plan->ctx;
    const clbn_op_desc *d = &plan->desc;
    const clbn_tensor_desc *t = &d->tensor;
    int in_order = 1;
    clbn_status st = clbn__check_launch(ctx, t->dtype, &queue, &in_order, num_wait, wait);
    if (st != CLBN_SUCCESS)
        return st;
    int r[SLOTS];
    roles(d, r);
    const int empty = plan->elements == 0;
    const size_t es = clbn__dtype_size(t->dtype), ps = clbn__param_size(t->dtype);
    clbn_args sub = *a;
    region reg[SLOTS];
    memset(reg, 0, sizeof reg);
    const clbn_tensor_view dense = dense_view(t);

    /* 1. buffers and bounds */
    for (int i = 0; i < SLOTS; ++i) {
        cl_mem m = *arg_mem(&sub, i);
        if (!m || r[i] == R_UNUSED)
            continue;
        size_t size = 0;
        if ((st = clbn__check_buffer(ctx, m, 0, 0)) != CLBN_SUCCESS)
            return st;
        if (clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS)
            return CLBN_ERROR_INVALID_BUFFER;
        region *g = &reg[i];
        g->mem = m;
        g->offset = arg_offset(a, i);
        if (i < T_COUNT) {
            if (empty)
                continue; /* no elements: nothing to bound */
            int overflow = 0;
            g->tensor = 1;
            g->view = plan->views[i];
            g->unit = es;
            const size_t e = extent(t, &g->view, &overflow); /* checked at plan creation */
            if (g->offset > SIZE_MAX / es - 1 - e)
                return CLBN_ERROR_VIEW_OUT_OF_BOUNDS;
            g->last = g->offset + e;
        } else {
            g->unit = ps;
            if (g->offset > SIZE_MAX / ps - t->c)
                return CLBN_ERROR_VIEW_OUT_OF_BOUNDS;
            g->last = g->offset + t->c - 1;
        }
        if ((g->last + 1) > size / g->unit)
            return CLBN_ERROR_VIEW_OUT_OF_BOUNDS;
    }

    /* 2. aliasing: every output against every other argument */
    for (int o = 0; o < SLOTS; ++o) {
        if (!reg[o].mem || !(r[o] & R_OUT))
            continue;
        for (int i = 0; i < SLOTS; ++i) {
            if (i == o || !reg[i].mem || reg[i].mem != reg[o].mem)
                continue;
            if (empty && (i < T_COUNT || o < T_COUNT))
                continue;
            if (identical(&reg[o], &reg[i]) && in_place_allowed(o, i))
                continue;
            if (overlaps(t, &reg[o], &reg[i]))
                return CLBN_ERROR_VIEW_ALIASING;
        }
    }

    static clbn_status (*const runners[])(const clbn_plan *, cl_command_queue, const clbn_args *,
                                          cl_uint, const cl_event *, cl_event *) = {
        clbn__run_forward_training, clbn__run_forward_inference, clbn__run_backward,
        clbn__run_backward_inference};

    /* Dense tensors with offsets, or views the plan's kernels read in place
     * (clbn__views_in_place): the operation's kernels take the offsets
     * (clbn__offsets) and the row strides (plan->views), no temporaries, no
     * lock. The runner checks the rest; the aliasing is what was checked
     * above, by region. */
    if (!plan->has_views || clbn__views_in_place(plan)) {
        clbn_plan direct = *plan;
        direct.regions_checked = 1;
        return runners[d->op](&direct, queue, a, num_wait, wait, event);
    }

    /* 3. temporaries: one per distinct region that needs one, each a
     * sub-buffer at an aligned origin of one buffer (cached per in-order
     * queue; the views lock keeps another execution on that queue from
     * interleaving its copies with ours) */
    temp temps[SLOTS];
    size_t origin[SLOTS], total = 0;
    int tmp_of[SLOTS], ntemps = 0;
    cl_uint align_bits = 1024;
    clGetDeviceInfo(ctx->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    const size_t align = align_bits / 8 > 128 ? align_bits / 8 : 128;
    for (int i = 0; i < SLOTS; ++i) {
        tmp_of[i] = -1;
        if (!reg[i].mem || (empty && i < T_COUNT))
            continue;
        int need = reg[i].offset != 0 || (i < T_COUNT && !same_view(&reg[i].view, &dense)) ||
                   (r[i] == R_INOUT && reg[T_COUNT + V_RM].mem && reg[T_COUNT + V_RV].mem);
        for (int j = 0; j < SLOTS && !need; ++j)
            need = j != i && reg[j].mem == reg[i].mem;
        if (!need)
            continue;
        for (int j = 0; j < i && tmp_of[i] < 0; ++j)
            if (tmp_of[j] >= 0 && reg[j].mem == reg[i].mem && reg[j].offset == reg[i].offset &&
                reg[j].tensor == reg[i].tensor &&
                (!reg[i].tensor || same_view(&reg[j].view, &reg[i].view)))
                tmp_of[i] = tmp_of[j];
        if (tmp_of[i] >= 0)
            continue;
        const size_t bytes = i < T_COUNT ? plan->elements * es : t->c * ps;
        temps[ntemps].mem = NULL;
        temps[ntemps].first = i;
        origin[ntemps] = total;
        total += (bytes + align - 1) / align * align;
        tmp_of[i] = ntemps++;
    }
    cl_mem whole = NULL;
    int owned = 0, locked = 0;
    cl_int err = CL_SUCCESS;
    if (ntemps > 0) {
        if (in_order) {
            pthread_mutex_lock(&ctx->views_lock);
            locked = 1;
            st = temps_get(ctx, queue, total, &whole);
        } else {
            whole = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, total, NULL, &err);
            owned = 1;
            st = clbn__from_cl(err);
        }
    }
    for (int k = 0; k < ntemps && st == CLBN_SUCCESS; ++k) {
        const int i = temps[k].first;
        cl_buffer_region rg = {origin[k], i < T_COUNT ? plan->elements * es : t->c * ps};
        temps[k].mem = clCreateSubBuffer(whole, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &rg,
                                         &err);
        st = clbn__from_cl(err);
    }
    clbn_args clean = sub; /* the runner's arguments: temporaries, no offsets */
    for (int i = 0; i < SLOTS; ++i) {
        if (empty && i < T_COUNT && r[i] != R_UNUSED)
            *arg_mem(&clean, i) = NULL; /* an empty batch reads no tensor */
        else if (tmp_of[i] >= 0)
            *arg_mem(&clean, i) = temps[tmp_of[i]].mem;
    }
    clean.x_offset = clean.y_offset = clean.z_offset = 0;
    clean.dy_offset = clean.dx_offset = clean.dz_offset = 0;
    clean.weight_offset = clean.bias_offset = 0;
    clean.running_mean_offset = clean.running_var_offset = 0;
    clean.save_mean_offset = clean.save_invstd_offset = 0;
    clean.dweight_offset = clean.dbias_offset = 0;

    /* the runner runs on dense temporaries: a copy of the plan with dense views */
    clbn_plan dense_plan = *plan;
    for (int i = 0; i < T_COUNT; ++i)
        dense_plan.views[i] = dense;
    plan = &dense_plan;
    /* the runner's own checks, enqueueing nothing */
    if (st == CLBN_SUCCESS) {
        clbn_plan dry = *plan;
        dry.path = CLBN_PATH_EMPTY;
        dry.has_views = 0;
        st = runners[d->op](&dry, queue, &clean, 0, NULL, NULL);
    }
    cl_event in_ev[SLOTS + 1], out_ev[SLOTS + 1], run_ev = NULL;
    int nin = 0, nout = 0;
    if (st != CLBN_SUCCESS || empty) {
        if (st == CLBN_SUCCESS)
            st = runners[d->op](plan, queue, &clean, num_wait, wait, event);
        goto done;
    }

    /* 4. copies in. On an in-order queue the queue orders the commands and no
     * event links them (as clbn__run does: Rusticl's clFinish was seen to
     * return before commands waiting on an event of their own queue ran);
     * on an out-of-order queue events do. */
    clbn_step steps[T_COUNT];
    int nsteps = 0, ncopies = 0;
    for (int k = 0; k < ntemps && err == CL_SUCCESS; ++k) {
        int reads = 0;
        for (int i = 0; i < SLOTS; ++i)
            if (tmp_of[i] == k && (r[i] & R_IN))
                reads = 1;
        if (!reads)
            continue;
        const int i = temps[k].first;
        const region *g = &reg[i];
        if (i < T_COUNT) {
            const walk w = make_walk(t, &g->view);
            const cl_ulong off = g->offset;
            steps[nsteps++] = CLBN_STEP(copy_launch(plan->prog, CLBN_K_VIEW_GATHER, &w),
                                        ARG_MEM(g->mem), ARG(off), ARG(w.sa), ARG(w.sb), ARG(w.sj),
                                        ARG_MEM(temps[k].mem), ARG(w.A), ARG(w.B), ARG(w.J),
                                        ARG(w.run), ARG(w.a_fast));
        } else {
            err = clEnqueueCopyBuffer(queue, g->mem, temps[k].mem, g->offset * ps, 0, t->c * ps,
                                      num_wait, wait, in_order ? NULL : &in_ev[nin]);
            if (err == CL_SUCCESS) {
                ++ncopies;
                nin += !in_order;
            }
        }
    }
    if (err != CL_SUCCESS)
        st = clbn__from_cl(err);
    /* one clbn__run per copy: a run sets all its steps' arguments before
     * enqueueing, and the copies share one kernel object */
    for (int i = 0; i < nsteps && st == CLBN_SUCCESS; ++i) {
        st = clbn__run(ctx, plan->prog, queue, in_order, 0, &steps[i], 1, num_wait, wait,
                       in_order ? NULL : &in_ev[nin]);
        if (st == CLBN_SUCCESS) {
            ++ncopies;
            nin += !in_order;
        }
    }

    /* 5. the operation on the dense temporaries */
    if (st == CLBN_SUCCESS && in_order)
        st = runners[d->op](plan, queue, &clean, ncopies ? 0 : num_wait, ncopies ? NULL : wait,
                            NULL);
    else if (st == CLBN_SUCCESS)
        st = runners[d->op](plan, queue, &clean, nin ? (cl_uint)nin : num_wait,
                            nin ? in_ev : wait, &run_ev);

    /* 6. copies out */
    nsteps = 0;
    int vec_out[SLOTS], nvec = 0;
    for (int k = 0; k < ntemps && st == CLBN_SUCCESS && err == CL_SUCCESS; ++k) {
        int writes = 0;
        for (int i = 0; i < SLOTS; ++i)
            if (tmp_of[i] == k && (r[i] & R_OUT))
                writes = 1;
        if (!writes)
            continue;
        /* the region to write back: the output's (an identical input shares it) */
        int i = temps[k].first;
        for (int j = 0; j < SLOTS; ++j)
            if (tmp_of[j] == k && (r[j] & R_OUT)) {
                i = j;
                break;
            }
        const region *g = &reg[i];
        if (i < T_COUNT) {
            const walk w = make_walk(t, &g->view);
            const cl_ulong off = g->offset;
            steps[nsteps++] = CLBN_STEP(copy_launch(plan->prog, CLBN_K_VIEW_SCATTER, &w),
                                        ARG_MEM(temps[k].mem), ARG_MEM(g->mem), ARG(off),
                                        ARG(w.sa), ARG(w.sb), ARG(w.sj), ARG(w.A), ARG(w.B),
                                        ARG(w.J), ARG(w.run), ARG(w.a_fast));
        } else {
            vec_out[nvec++] = i;
        }
    }
    for (int i = 0; i < nsteps && st == CLBN_SUCCESS; ++i) {
        st = clbn__run(ctx, plan->prog, queue, in_order, 0, &steps[i], 1, !in_order,
                       in_order ? NULL : &run_ev, in_order ? NULL : &out_ev[nout]);
        if (st == CLBN_SUCCESS)
            nout += !in_order;
    }
    /* the vectors after the tensors, the running statistics (state) last */
    int commit = 0;
    for (int v = 0; v < nvec && st == CLBN_SUCCESS && err == CL_SUCCESS; ++v) {
        const int i = vec_out[v];
        if (i == T_COUNT + V_RM || i == T_COUNT + V_RV) {
            commit = 1;
            continue;
        }
        const region *g = &reg[i];
        err = clEnqueueCopyBuffer(queue, temps[tmp_of[i]].mem, g->mem, 0, g->offset * ps, t->c * ps,
                                  !in_order, in_order ? NULL : &run_ev,
                                  in_order ? NULL : &out_ev[nout]);
        if (err == CL_SUCCESS)
            nout += !in_order;
    }
    if (st == CLBN_SUCCESS && err != CL_SUCCESS)
        st = clbn__from_cl(err);
    if (st == CLBN_SUCCESS && commit) {
        /* both running statistics in one kernel: together or not at all */
        const region *m = &reg[T_COUNT + V_RM], *v = &reg[T_COUNT + V_RV];
        const cl_ulong C = t->c, moff = m->offset, voff = v->offset;
        clbn_launch l;
        clbn__plan_per_channel(plan->prog, CLBN_K_VIEW_COMMIT, t->c, &l);
        const clbn_step step = CLBN_STEP(l, ARG_MEM(temps[tmp_of[T_COUNT + V_RM]].mem),
                                         ARG_MEM(temps[tmp_of[T_COUNT + V_RV]].mem),
                                         ARG_MEM(m->mem), ARG(moff), ARG_MEM(v->mem), ARG(voff),
                                         ARG(C));
        /* it waits for everything else, so its event is the call's: no
         * marker after it that could fail once the state has changed */
        cl_event after[SLOTS + 2];
        after[0] = run_ev;
        for (int i = 0; i < nout; ++i)
            after[1 + i] = out_ev[i];
        cl_event last = NULL;
        st = clbn__run(ctx, plan->prog, queue, in_order, 0, &step, 1,
                       in_order ? 0 : (cl_uint)(1 + nout), in_order ? NULL : after,
                       event ? &last : NULL);
        if (st == CLBN_SUCCESS && event) {
            *event = last;
            event = NULL; /* handed out */
        }
    }
    if (st == CLBN_SUCCESS && event && in_order) {
        /* after everything enqueued before it on this queue */
        st = clbn__from_cl(clEnqueueMarkerWithWaitList(queue, 0, NULL, event));
    } else if (st == CLBN_SUCCESS && event) {
        if (nout == 1) {
            *event = out_ev[0];
            out_ev[0] = NULL;
        } else if (nout == 0) {
            *event = run_ev;
            run_ev = NULL;
        } else {
            st = clbn__from_cl(clEnqueueMarkerWithWaitList(queue, (cl_uint)nout, out_ev, event));
        }
    }
done:
    release_events(in_ev, nin);
    release_events(out_ev, nout);
    if (run_ev)
        clReleaseEvent(run_ev);
    for (int k = 0; k < ntemps; ++k)
        if (temps[k].mem)
            clReleaseMemObject(temps[k].mem);
    if (owned && whole)
        clReleaseMemObject(whole);
    if (locked)
        pthread_mutex_unlock(&ctx->views_lock);
    return st;
}

/* The temporaries' buffer for an in-order queue, with ctx->views_lock held:
 * as clbn__scratch_get, in its own slots. */
static clbn_status temps_get(clbn_context *ctx, cl_command_queue queue, size_t bytes, cl_mem *out)
{
    clbn_scratch *slot = NULL;
    for (int i = 0; i < CLBN_SCRATCH_SLOTS && !slot; ++i)
        if (ctx->views_temps[i].buffer && ctx->views_temps[i].queue == queue)
            slot = &ctx->views_temps[i];
    if (!slot) { /* an empty slot, else the least recently used */
        slot = &ctx->views_temps[0];
        for (int i = 0; i < CLBN_SCRATCH_SLOTS; ++i) {
            if (!ctx->views_temps[i].buffer) {
                slot = &ctx->views_temps[i];
                break;
            }
            if (ctx->views_temps[i].last_use < slot->last_use)
                slot = &ctx->views_temps[i];
        }
    }
    if (!slot->buffer || slot->queue != queue || slot->size < bytes) {
        cl_int err;
        cl_mem mem = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return clbn__from_cl(err);
        /* commands already enqueued keep the old buffer alive until they finish */
        if (slot->buffer)
            clReleaseMemObject(slot->buffer);
        slot->buffer = mem;
        slot->size = bytes;
        slot->queue = queue;
    }
    slot->last_use = ++ctx->views_clock;
    *out = slot->buffer;
    return CLBN_SUCCESS;
}

void clbn__views_release_all(clbn_context *ctx)
{
    for (int i = 0; i < CLBN_SCRATCH_SLOTS; ++i) {
        if (ctx->views_temps[i].buffer)
            clReleaseMemObject(ctx->views_temps[i].buffer);
        ctx->views_temps[i].buffer = NULL;
    }
}
