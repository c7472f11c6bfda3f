/* clbn-tune: tunes every plan of a list of shapes on one device with
 * clbn_plan_tune (each result goes into the user's tuning database) and
 * prints default vs tuned time; with the ResNet-50 shapes, also the sums over
 * its 53 BN layers. `clbn-tune --help` for the options; docs/tuning.md. */
#include <clbn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct shape {
    size_t n, c, s;
    int resnet; /* how many of ResNet-50's BN layers at batch 32 have it (0: none) */
} shape;

/* every BN shape of ResNet-50 at batch 32 (torchvision: stride in the 3x3
 * convolution), with its count, then the benchmark suite's */
static const shape default_shapes[] = {
    {32, 64, 112 * 112, 1}, {32, 64, 56 * 56, 6},  {32, 256, 56 * 56, 4}, {32, 128, 56 * 56, 1},
    {32, 128, 28 * 28, 7},  {32, 512, 28 * 28, 5}, {32, 256, 28 * 28, 1}, {32, 256, 14 * 14, 11},
    {32, 1024, 14 * 14, 7}, {32, 512, 14 * 14, 1}, {32, 512, 7 * 7, 5},   {32, 2048, 7 * 7, 4},
    {16, 3, 224 * 224, 0},  {64, 64, 112 * 112, 0}, {256, 2048, 7 * 7, 0}, {8, 32, 16 * 16, 0},
};
enum { NDEFAULT = sizeof default_shapes / sizeof *default_shapes, MAX_SHAPES = 64 };

static const char *const mode_names[] = {"infer", "train", "bwd"};
static const char *const dtype_names[] = {"f32", "f16", "bf16", "f64"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clbn-tune [options]\n"
            "Tunes clbn's plans for a list of shapes on the device clbn picks (CLBN_DEVICE\n"
            "chooses), records each in the user's tuning database (CLBN_TUNING_DB, else\n"
            "$XDG_CACHE_HOME/clbn/tuning.db) and prints default vs tuned time per execution.\n"
            "  --shape NxCxS     a shape (repeatable); default: every BN shape of ResNet-50 at\n"
            "                    batch 32 and the benchmark suite's (--list shows them)\n"
            "  --layout L        nchw, nhwc or both (default both)\n"
            "  --dtype D         f32, f16, bf16, f64, or a comma list (default f32,f16)\n"
            "  --mode M          infer, train, bwd, or a comma list (default all three:\n"
            "                    inference forward, training forward, backward)\n"
            "  --budget MS       tuning budget per plan in ms (default 20000)\n"
            "  --reps N          executions per timing batch (default: about 20 ms worth)\n"
            "  --list            print the default shapes and exit\n"
            "  --help            this text\n");
}

static int parse_list(const char *arg, const char *const *names, int count, unsigned *mask)
{
    *mask = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int i = 0; i < count; ++i)
            if (strcmp(tok, names[i]) == 0) {
                *mask |= 1u << i;
                found = 1;
            }
        if (!found)
            return 0;
    }
    return *mask != 0;
}

typedef struct run {
    clbn_context *ctx;
    cl_context cl;
    cl_command_queue queue;
    cl_mem m[12];
} run;

/* Buffers for one shape: tensors filled with 1.0 in the dtype, vectors too. */
static int make_buffers(run *r, clbn_dtype dt, size_t elements, size_t c)
{
    const size_t tsize = dt == CLBN_FLOAT64 ? 8 : dt == CLBN_FLOAT32 ? 4 : 2;
    const size_t vsize = dt == CLBN_FLOAT64 ? 8 : 4;
    for (int i = 0; i < 12; ++i) {
        const int tensor = i < 5;
        const size_t bytes = (tensor ? elements * tsize : c * vsize);
        cl_int err;
        r->m[i] = clCreateBuffer(r->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return 0;
        const double one64 = 1.0;
        const float one32 = 1.0f;
        const uint16_t one16 = dt == CLBN_FLOAT16 ? 0x3c00 : 0x3f80;
        const size_t esize = tensor ? tsize : vsize;
        const void *pat = esize == 8 ? (const void *)&one64 : esize == 4 ? (const void *)&one32
                                                                         : (const void *)&one16;
        if (clEnqueueFillBuffer(r->queue, r->m[i], pat, esize, 0, bytes, 0, NULL, NULL) != CL_SUCCESS)
            return 0;
    }
    return clFinish(r->queue) == CL_SUCCESS;
}

static void free_buffers(run *r)
{
    for (int i = 0; i < 12; ++i)
        if (r->m[i])
            clReleaseMemObject(r->m[i]);
    memset(r->m, 0, sizeof r->m);
}

static clbn_args args_for(const run *r, clbn_op op)
{
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = r->m[0];
    a.weight = r->m[5];
    if (op == CLBN_OP_FORWARD_TRAINING || op == CLBN_OP_FORWARD_INFERENCE) {
        a.y = r->m[1];
        a.bias = r->m[6];
        a.running_mean = r->m[7];
        a.running_var = r->m[8];
        if (op == CLBN_OP_FORWARD_TRAINING) {
            a.save_mean = r->m[9];
            a.save_invstd = r->m[10];
            a.momentum = 0.1;
        }
    } else {
        a.dy = r->m[2];
        a.dx = r->m[3];
        a.save_mean = r->m[9];
        a.save_invstd = r->m[10];
        a.dweight = r->m[11];
        a.dbias = r->m[6];
    }
    return a;
}

/* ms per execution: the best of 5 batches */
static double time_plan(run *r, clbn_plan *p, const clbn_args *a, int reps)
{
    double best = 1e30;
    if (clbn_plan_execute(p, r->queue, a, 0, NULL, NULL) != CLBN_SUCCESS || clFinish(r->queue) != CL_SUCCESS)
        return -1;
    if (reps <= 0) {
        const double t0 = now_ms();
        clbn_plan_execute(p, r->queue, a, 0, NULL, NULL);
        clFinish(r->queue);
        const double one = now_ms() - t0;
        reps = one >= 20 ? 1 : one < 0.02 ? 1000 : (int)(20 / one) + 1;
    }
    for (int b = 0; b < 5; ++b) {
        const double t0 = now_ms();
        for (int i = 0; i < reps; ++i)
            if (clbn_plan_execute(p, r->queue, a, 0, NULL, NULL) != CLBN_SUCCESS)
                return -1;
        clFinish(r->queue);
        const double t = (now_ms() - t0) / reps;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    shape shapes[MAX_SHAPES];
    int nshapes = 0;
    unsigned layouts = 3, dtypes = 3, modes = 7;
    double budget = 20000;
    int reps = 0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const char *const layout_names[] = {"nchw", "nhwc"};
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            for (int k = 0; k < NDEFAULT; ++k)
                printf("%zux%zux%zu%s\n", default_shapes[k].n, default_shapes[k].c, default_shapes[k].s,
                       default_shapes[k].resnet ? " (ResNet-50)" : "");
            return 0;
        } else if (strcmp(a, "--shape") == 0 && v && nshapes < MAX_SHAPES) {
            shape s = {0, 0, 0, 0};
            if (sscanf(v, "%zux%zux%zu", &s.n, &s.c, &s.s) != 3 || !s.n || !s.c || !s.s) {
                fprintf(stderr, "clbn-tune: bad shape '%s' (NxCxS)\n", v);
                return 2;
            }
            shapes[nshapes++] = s;
            ++i;
        } else if (strcmp(a, "--layout") == 0 && v) {
            if (strcmp(v, "both") == 0)
                layouts = 3;
            else if (!parse_list(v, layout_names, 2, &layouts)) {
                fprintf(stderr, "clbn-tune: bad layout '%s'\n", v);
                return 2;
            }
            ++i;
        } else if (strcmp(a, "--dtype") == 0 && v) {
            if (!parse_list(v, dtype_names, 4, &dtypes)) {
                fprintf(stderr, "clbn-tune: bad dtype list '%s'\n", v);
                return 2;
            }
            ++i;
        } else if (strcmp(a, "--mode") == 0 && v) {
            if (!parse_list(v, mode_names, 3, &modes)) {
                fprintf(stderr, "clbn-tune: bad mode list '%s'\n", v);
                return 2;
            }
            ++i;
        } else if (strcmp(a, "--budget") == 0 && v) {
            budget = atof(v);
            ++i;
        } else if (strcmp(a, "--reps") == 0 && v) {
            reps = atoi(v);
            ++i;
        } else {
            usage(stderr);
            return 2;
        }
    }
    const int use_default = nshapes == 0;
    if (use_default) {
        memcpy(shapes, default_shapes, sizeof default_shapes);
        nshapes = NDEFAULT;
    }

    run r;
    memset(&r, 0, sizeof r);
    clbn_status st = clbn_context_create_default(&r.ctx);
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "clbn-tune: no context: %s\n", clbn_status_name(st));
        return 1;
    }
    r.cl = clbn_context_get_cl_context(r.ctx);
    r.queue = clbn_context_get_queue(r.ctx);
    char dev[256] = "";
    clGetDeviceInfo(clbn_context_get_device(r.ctx), CL_DEVICE_NAME, sizeof dev, dev, NULL);
    printf("# device: %s; budget %.0f ms per plan; times: ms per execution, default and tuned alternately, best of 15 batches each\n",
           dev, budget);
    printf("%-16s %-6s %-5s %-6s %10s %10s %7s  %s\n", "shape", "layout", "dtype", "mode", "default",
           "tuned", "ratio", "tuned parameters (differing from the defaults)");
    /* ResNet-50 sums per (layout, dtype, mode): default, tuned */
    double sums[2][4][3][2];
    int counted[2][4][3];
    memset(sums, 0, sizeof sums);
    memset(counted, 0, sizeof counted);
    int failures = 0;
    for (int si = 0; si < nshapes; ++si)
        for (int l = 0; l < 2; ++l)
            for (int d = 0; d < 4; ++d) {
                if (!(layouts & (1u << l)) || !(dtypes & (1u << d)))
                    continue;
                const shape *sh = &shapes[si];
                const clbn_tensor_desc td = {(clbn_dtype)d, (clbn_layout)l, sh->n, sh->c, sh->s};
                if (!make_buffers(&r, td.dtype, sh->n * sh->c * sh->s, sh->c)) {
                    fprintf(stderr, "clbn-tune: out of device memory for %zux%zux%zu\n", sh->n, sh->c, sh->s);
                    free_buffers(&r);
                    ++failures;
                    continue;
                }
                for (int m = 0; m < 3; ++m) {
                    if (!(modes & (1u << m)))
                        continue;
                    const clbn_op op = m == 0 ? CLBN_OP_FORWARD_INFERENCE
                                     : m == 1 ? CLBN_OP_FORWARD_TRAINING : CLBN_OP_BACKWARD;
                    clbn_op_desc od;
                    clbn_plan *p = NULL;
                    char defaults[1024], tuned[1024], diff[1024] = "";
                    st = clbn_op_desc_init(&od, op, &td);
                    if (st == CLBN_SUCCESS)
                        st = clbn_plan_create(r.ctx, &od, &p);
                    if (st == CLBN_SUCCESS)
                        st = clbn_plan_set_tuning(p, NULL);
                    if (st != CLBN_SUCCESS) {
                        printf("%zux%zux%zu %s %s %s: %s\n", sh->n, sh->c, sh->s, l ? "nhwc" : "nchw",
                               dtype_names[d], mode_names[m], clbn_status_name(st));
                        clbn_plan_release(p);
                        ++failures;
                        continue;
                    }
                    const clbn_args a = args_for(&r, op);
                    clbn_plan_get_tuning(p, defaults, sizeof defaults);
                    st = clbn_plan_tune(p, r.queue, budget);
                    /* default and tuned plans timed alternately, best of each:
                     * a ratio from the same moments of a busy machine */
                    clbn_plan *q = NULL;
                    double t_default = 1e30, t_tuned = 1e30;
                    if (st == CLBN_SUCCESS && (st = clbn_plan_create(r.ctx, &od, &q)) == CLBN_SUCCESS)
                        st = clbn_plan_set_tuning(q, NULL);
                    for (int k = 0; k < 3 && st == CLBN_SUCCESS; ++k) {
                        const double td = time_plan(&r, q, &a, reps), tt = time_plan(&r, p, &a, reps);
                        t_default = td >= 0 && td < t_default ? td : t_default;
                        t_tuned = tt >= 0 && tt < t_tuned ? tt : t_tuned;
                        if (td < 0 || tt < 0)
                            t_default = -1;
                    }
                    clbn_plan_release(q);
                    clbn_plan_get_tuning(p, tuned, sizeof tuned);
                    /* the pairs that differ from the defaults */
                    char *save = NULL;
                    for (char *tok = strtok_r(tuned, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                        char needle[128];
                        snprintf(needle, sizeof needle, " %s ", tok);
                        char padded[1100];
                        snprintf(padded, sizeof padded, " %s ", defaults);
                        if (!strstr(padded, needle) && strlen(diff) + strlen(tok) + 2 < sizeof diff) {
                            strcat(diff, diff[0] ? " " : "");
                            strcat(diff, tok);
                        }
                    }
                    char name[64];
                    snprintf(name, sizeof name, "%zux%zux%zu", sh->n, sh->c, sh->s);
                    if (st != CLBN_SUCCESS || t_default < 0 || t_tuned < 0) {
                        printf("%-16s %-6s %-5s %-6s failed: %s\n", name, l ? "nhwc" : "nchw", dtype_names[d],
                               mode_names[m], clbn_status_name(st));
                        ++failures;
                    } else {
                        printf("%-16s %-6s %-5s %-6s %10.4f %10.4f %7.3f  %s\n", name, l ? "nhwc" : "nchw",
                               dtype_names[d], mode_names[m], t_default, t_tuned, t_tuned / t_default,
                               diff[0] ? diff : "(defaults)");
                        if (sh->resnet) {
                            sums[l][d][m][0] += sh->resnet * t_default;
                            sums[l][d][m][1] += sh->resnet * t_tuned;
                            counted[l][d][m] += sh->resnet;
                        }
                    }
                    fflush(stdout);
                    clbn_plan_release(p);
                }
                free_buffers(&r);
            }
    for (int l = 0; l < 2; ++l)
        for (int d = 0; d < 4; ++d) {
            if (counted[l][d][0] != 53 && counted[l][d][1] != 53)
                continue;
            printf("# ResNet-50 batch 32, %s %s, sum over its 53 BN layers (ms):", l ? "NHWC" : "NCHW",
                   dtype_names[d]);
            if (counted[l][d][0] == 53)
                printf(" inference %.3f default, %.3f tuned;", sums[l][d][0][0], sums[l][d][0][1]);
            if (counted[l][d][1] == 53 && counted[l][d][2] == 53)
                printf(" training forward + backward %.3f default, %.3f tuned",
                       sums[l][d][1][0] + sums[l][d][2][0], sums[l][d][1][1] + sums[l][d][2][1]);
            printf("\n");
        }
    clbn_context_release(r.ctx);
    return failures ? 1 : 0;
}
