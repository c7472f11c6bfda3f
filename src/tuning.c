/* The planner's parameters (clbn_tuning, internal.h) as text, their limits,
 * and re-planning a plan with another set: clbn_plan_get_tuning,
 * clbn_plan_set_tuning. The tuner (tune.c) and the tuning database
 * (tuning_db.c) use the same text form.
 *
 * Text form: "key=value" pairs separated by spaces (or commas), e.g.
 * "group=64 norm_group=32 item_elements=1024". Keys not named keep their
 * value; an unknown key or a value outside its limits is refused whole. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values above this are refused (no product in the planner can overflow). */
#define TUNING_VALUE_MAX ((size_t)1 << 40)

enum { ANY = 0, POW2 = 1, MULT8 = 2, BOOL = 3 };
typedef struct field {
    const char *key;
    size_t offset;
    size_t min;
    int kind;
} field;

#define F(name, min, kind) {#name, offsetof(clbn_tuning, name), (min), (kind)}
static const field fields[] = {
    F(group, 1, POW2),
    F(norm_group, 1, POW2),
    F(tile_target, 1, ANY),
    F(tile_min, 1, ANY),
    F(tile_run, 1, ANY),
    F(groups_per_cu, 0, ANY),
    F(splits_per_cu, 0, ANY),
    F(splits_min, 0, ANY),
    F(item_elements, 8, MULT8),
    F(nhwc_wide_pixels, 0, ANY),
    F(nhwc_by_channel, 0, ANY),
    F(nhwc_pixel_channels, 0, ANY),
    F(small_elements, 0, ANY),
    F(small_items_per_cu, 0, ANY),
    F(small_group_elements, 0, ANY),
    F(small_nhwc_elements, 0, ANY),
    F(rows_spatial, 0, ANY),
    F(flat_spatial, 0, ANY),
    F(rows_run, 1, ANY),
    F(rows_item_values, 1, ANY),
    F(rows_items_per_cu, 0, ANY),
    F(rows_group, 1, POW2),
    F(flat_item, 8, MULT8),
    F(norm_prefetch, 0, ANY),
    F(norm_row_prefetch, 0, ANY),
    F(channel_bytes, 0, ANY),
    F(channel_groups_per_cu, 0, ANY),
    F(channel_min_s, 0, ANY),
    F(channel_cols, 8, MULT8),
    F(channel_training, 0, BOOL),
    F(channel_stream_bytes, 0, ANY),
    F(stream_bytes, 0, ANY),
    F(period_vectors, 0, ANY),
    F(infer_one_kernel_rows, 0, ANY),
    F(gpu_geometry, 0, BOOL),
};
#undef F
enum { FIELD_COUNT = sizeof fields / sizeof *fields };

static size_t *at(clbn_tuning *t, const field *f)
{
    return (size_t *)(void *)((char *)t + f->offset);
}

static size_t value(const clbn_tuning *t, const field *f)
{
    return *(const size_t *)(const void *)((const char *)t + f->offset);
}

static int value_ok(const field *f, size_t v)
{
    if (v < f->min || v > TUNING_VALUE_MAX)
        return 0;
    switch (f->kind) {
    case POW2:
        return v <= CLBN_GROUP_MAX && (v & (v - 1)) == 0;
    case MULT8:
        return v % 8 == 0;
    case BOOL:
        return v <= 1;
    default:
        return 1;
    }
}

int clbn__tuning_check(const clbn_tuning *t)
{
    for (int i = 0; i < FIELD_COUNT; ++i)
        if (!value_ok(&fields[i], value(t, &fields[i])))
            return 0;
    return 1;
}

clbn_status clbn__tuning_parse(const char *text, clbn_tuning *t)
{
    clbn_tuning out = *t;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            ++p;
        if (*p == '\0' || *p == '\n')
            break;
        const char *eq = p;
        while (*eq && *eq != '=' && *eq != ' ' && *eq != ',' && *eq != '\t' && *eq != '\n')
            ++eq;
        if (*eq != '=')
            return CLBN_ERROR_INVALID_OPTION;
        const field *f = NULL;
        for (int i = 0; i < FIELD_COUNT; ++i)
            if (strlen(fields[i].key) == (size_t)(eq - p) &&
                strncmp(fields[i].key, p, (size_t)(eq - p)) == 0)
                f = &fields[i];
        if (!f || eq[1] < '0' || eq[1] > '9')
            return CLBN_ERROR_INVALID_OPTION;
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(eq + 1, &end, 10);
        if (errno || (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n') ||
            v > TUNING_VALUE_MAX || !value_ok(f, (size_t)v))
            return CLBN_ERROR_INVALID_OPTION;
        *at(&out, f) = (size_t)v;
        p = end;
    }
    *t = out;
    return CLBN_SUCCESS;
}

size_t clbn__tuning_format(const clbn_tuning *t, char *buf, size_t size)
{
    size_t len = 0;
    for (int i = 0; i < FIELD_COUNT; ++i) {
        int n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0, "%s%s=%zu",
                         i ? " " : "", fields[i].key, value(t, &fields[i]));
        if (n > 0)
            len += (size_t)n;
    }
    if (size > 0 && len >= size)
        buf[size - 1] = '\0';
    return len;
}

size_t clbn__tuning_format_diff(const clbn_tuning *t, const clbn_tuning *base, char *buf,
                                size_t size)
{
    size_t len = 0;
    if (size > 0)
        buf[0] = '\0';
    for (int i = 0; i < FIELD_COUNT; ++i) {
        if (value(t, &fields[i]) == value(base, &fields[i]))
            continue;
        int n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0, "%s%s=%zu",
                         len ? " " : "", fields[i].key, value(t, &fields[i]));
        if (n > 0)
            len += (size_t)n;
    }
    if (size > 0 && len >= size)
        buf[size - 1] = '\0';
    return len;
}

clbn_status clbn__plan_retune(clbn_plan *plan, const clbn_tuning *t, int warm)
{
    /* as clbn_plan_create starts: nothing planned yet */
    clbn_plan tmp = *plan;
    tmp.path = CLBN_PATH_EMPTY;
    tmp.one_is_channel = 0;
    memset(&tmp.one, 0, sizeof tmp.one);
    memset(&tmp.channel, 0, sizeof tmp.channel);
    memset(&tmp.stats, 0, sizeof tmp.stats);
    memset(&tmp.norm, 0, sizeof tmp.norm);
    memset(&tmp.finalize, 0, sizeof tmp.finalize);
    memset(&tmp.commit, 0, sizeof tmp.commit);
    tmp.tuning = *t;
    clbn_status st = clbn__plan_op(&tmp);
    if (st != CLBN_SUCCESS)
        return st;
    plan->path = tmp.path;
    plan->one = tmp.one;
    plan->one_is_channel = tmp.one_is_channel;
    plan->channel = tmp.channel;
    plan->stats = tmp.stats;
    plan->norm = tmp.norm;
    plan->finalize = tmp.finalize;
    plan->commit = tmp.commit;
    plan->tuning = *t;
    if (warm)
        clbn__plan_warm_up(plan);
    return CLBN_SUCCESS;
}

clbn_status clbn_plan_get_tuning(const clbn_plan *plan, char *buf, size_t size)
{
    if (!plan || !buf || size == 0)
        return CLBN_ERROR_NULL_ARGUMENT;
    /* virtual batches, channel blocks: the inner plan is the one tuned */
    plan = clbn__plan_kernels((clbn_plan *)plan);
    clbn__tuning_format(&plan->tuning, buf, size);
    return CLBN_SUCCESS;
}

clbn_status clbn_plan_set_tuning(clbn_plan *plan, const char *tuning)
{
    if (!plan)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (clbn__plan_kernels(plan) != plan) /* virtual batches, channel blocks: the inner plan */
        return clbn_plan_set_tuning(clbn__plan_kernels(plan), tuning);
    clbn_tuning t;
    clbn__tuning_defaults(plan->ctx, plan->desc.tensor.dtype, &t);
    if (tuning) {
        clbn_status st = clbn__tuning_parse(tuning, &t);
        if (st != CLBN_SUCCESS)
            return st;
    }
    if (plan->elements == 0) {
        plan->tuning = t;
        return CLBN_SUCCESS;
    }
    return clbn__plan_retune(plan, &t, 1);
}
