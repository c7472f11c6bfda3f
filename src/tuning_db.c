/* The tuning database (docs/tuning.md): tuned parameters per device, dtype,
 * layout, op and shape class, read at plan creation from the user's file
 * ($CLBN_TUNING_DB, else $XDG_CACHE_HOME/clbn/tuning.db, else
 * ~/.cache/clbn/tuning.db) and from the entries compiled into the library
 * (tuning_shipped.c), and written by clbn_plan_tune.
 *
 * One entry per line, tab-separated fields, the last an FNV-1a checksum of
 * the rest of the line:
 *   clbn-tuning-1 TAB kernels TAB platform TAB device TAB driver TAB cu TAB
 *   key TAB tuning TAB ms TAB checksum
 * A file whose first line is not the header "# clbn tuning database 1" is
 * foreign and ignored whole; a line that does not parse, has a wrong
 * checksum or no final newline (truncated) is ignored; a tuning text that
 * no longer parses (a parameter renamed) is ignored. Writes go to a temporary
 * file renamed over the database, under an flock on "<file>.lock", so
 * readers see the old or the new file and concurrent writers keep each
 * other's entries. Nothing here is ever an error for the caller. */
#define _DEFAULT_SOURCE 1 /* flock */
#include "internal.h"
#include "kernel_sources.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER "# clbn tuning database 1\n"
#define MAGIC "clbn-tuning-1"
enum { FIELD_MAX = 256, LINE_MAX_LEN = 2048, DB_MAX_BYTES = 16 << 20 };

extern const char *const clbn__tuning_shipped[];

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; ++i) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* A device info string with tabs and newlines made spaces. */
static void info_text(cl_device_id dev, cl_device_info what, char *out, size_t size)
{
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, size - 1, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[size - 1] = '\0';
    for (char *p = out; *p; ++p)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
}

typedef struct db_key {
    char kernels[17], platform[FIELD_MAX], device[FIELD_MAX], driver[FIELD_MAX], cu[16], shape[96];
} db_key;

static int log2_floor(size_t v)
{
    int r = 0;
    while (v >>= 1)
        ++r;
    return r;
}

/* dtype, layout, op, fused op and the shape class: the power of two of the
 * element count and of C, a bucket of S, and the 8-value alignment. */
static void shape_class(const clbn_op_desc *d, size_t elements, char *out, size_t size)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16", "f64"};
    static const char *const ops[] = {"fwd_train", "fwd_infer", "bwd", "bwd_infer"};
    const size_t S = d->tensor.spatial, C = d->tensor.c;
    const int sb = S == 1 ? 0 : S < 8 ? 1 : S < 64 ? 2 : S < 256 ? 3 : S < 4096 ? 4 : 5;
    const int nhwc = d->tensor.layout == CLBN_LAYOUT_NHWC;
    const int aligned = nhwc ? C % 8 == 0 : S % 8 == 0;
    snprintf(out, size, "%s %s %s f%d e%d c%d s%d a%d", dtypes[d->tensor.dtype & 3],
             nhwc ? "nhwc" : "nchw", ops[d->op & 3], (int)d->fused_op, log2_floor(elements),
             log2_floor(C), sb, aligned);
}

static void make_key(const clbn_plan *plan, db_key *k)
{
    memset(k, 0, sizeof *k);
    memcpy(k->kernels, clbn_kernel_sources_sha256, 16);
    cl_platform_id platform = NULL;
    k->platform[0] = '\0';
    if (clGetDeviceInfo(plan->ctx->device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) ==
            CL_SUCCESS &&
        clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof k->platform - 1, k->platform, NULL) !=
            CL_SUCCESS)
        k->platform[0] = '\0';
    for (char *p = k->platform; *p; ++p)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
    info_text(plan->ctx->device, CL_DEVICE_NAME, k->device, sizeof k->device);
    info_text(plan->ctx->device, CL_DRIVER_VERSION, k->driver, sizeof k->driver);
    snprintf(k->cu, sizeof k->cu, "%u", plan->ctx->compute_units);
    shape_class(&plan->desc, plan->elements, k->shape, sizeof k->shape);
}

/* Splits a checked line into its fields; 0 when it is not a valid entry. */
enum { F_MAGIC, F_KERNELS, F_PLATFORM, F_DEVICE, F_DRIVER, F_CU, F_SHAPE, F_TUNING, F_MS, F_SUM,
       F_COUNT };
static int split_entry(char *line, size_t len, char *field[F_COUNT])
{
    if (len == 0 || len >= LINE_MAX_LEN)
        return 0;
    int n = 0;
    char *p = line;
    field[n++] = p;
    for (size_t i = 0; i < len; ++i)
        if (line[i] == '\t') {
            if (n == F_COUNT)
                return 0;
            line[i] = '\0';
            field[n++] = line + i + 1;
        }
    if (n != F_COUNT || strcmp(field[F_MAGIC], MAGIC) != 0)
        return 0;
    char *end = NULL;
    unsigned long sum = strtoul(field[F_SUM], &end, 16);
    if (!end || *end || end == field[F_SUM])
        return 0;
    /* the checksum covers everything before its own field, tabs included */
    const size_t covered = (size_t)(field[F_SUM] - line) - 1;
    for (size_t i = 0; i < covered; ++i)
        if (line[i] == '\0')
            line[i] = '\t';
    const int ok = fnv1a(line, covered) == (uint32_t)sum;
    for (size_t i = 0; i < covered; ++i)
        if (line[i] == '\t')
            line[i] = '\0';
    return ok;
}

/* Whether a split entry is for `k` (kernels "any": shipped entries, valid
 * while their parameters parse). */
static int entry_matches(char *const f[F_COUNT], const db_key *k)
{
    return (strcmp(f[F_KERNELS], k->kernels) == 0 || strcmp(f[F_KERNELS], "any") == 0) &&
           strcmp(f[F_PLATFORM], k->platform) == 0 && strcmp(f[F_DEVICE], k->device) == 0 &&
           strcmp(f[F_DRIVER], k->driver) == 0 && strcmp(f[F_CU], k->cu) == 0 &&
           strcmp(f[F_SHAPE], k->shape) == 0;
}

/* The user database's path, or 0 when disabled ("off"). */
static int db_path(char *out, size_t size, int make_dir)
{
    const char *env = getenv("CLBN_TUNING_DB");
    if (env && strcmp(env, "off") == 0)
        return 0;
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return strlen(env) < size;
    }
    char dir[4096];
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(dir, sizeof dir, "%s/clbn", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/clbn", home);
    else
        return 0;
    if (make_dir) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            mkdir(parent, 0755); /* ~/.cache may not exist yet */
        }
        mkdir(dir, 0755);
    }
    return snprintf(out, size, "%s/tuning.db", dir) < (int)size;
}

/* The whole file, NUL-terminated, or NULL (missing, unreadable, too large,
 * foreign). */
static char *read_db(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || sb.st_size > DB_MAX_BYTES) {
        fclose(f);
        return NULL;
    }
    /* the file may grow meanwhile (a writer renames a new one over it; this
     * handle still reads the old one): one byte more tells */
    const size_t cap = (size_t)sb.st_size + 1;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    if (!buf || n >= cap || n < strlen(HEADER) || memcmp(buf, HEADER, strlen(HEADER)) != 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Looks `k` up in one database text (complete lines only); copies the tuning
 * text of the last matching entry whose parameters parse over `base` (the
 * plan's defaults) to *t. */
static int lookup_text(char *text, size_t len, const db_key *k, const clbn_tuning *base,
                       clbn_tuning *t)
{
    int found = 0;
    size_t i = 0;
    while (i < len) {
        char *nl = memchr(text + i, '\n', len - i);
        if (!nl)
            break; /* truncated: no final newline */
        const size_t n = (size_t)(nl - (text + i));
        char line[LINE_MAX_LEN];
        if (n < LINE_MAX_LEN) {
            memcpy(line, text + i, n);
            line[n] = '\0';
            char *f[F_COUNT];
            if (split_entry(line, n, f) && entry_matches(f, k)) {
                clbn_tuning cand = *base;
                if (clbn__tuning_parse(f[F_TUNING], &cand) == CLBN_SUCCESS) {
                    *t = cand;
                    found = 1;
                }
            }
        }
        i += n + 1;
    }
    return found;
}

int clbn__tuning_db_lookup(const clbn_plan *plan, clbn_tuning *t)
{
    db_key k;
    make_key(plan, &k);
    clbn_tuning base;
    clbn__tuning_defaults(plan->ctx, plan->desc.tensor.dtype, &base);
    char path[4096];
    if (db_path(path, sizeof path, 0)) {
        size_t len = 0;
        char *text = read_db(path, &len);
        if (text) {
            int found = lookup_text(text, len, &k, &base, t);
            free(text);
            if (found)
                return 1;
        }
    }
    for (int i = 0; clbn__tuning_shipped[i]; ++i) {
        const char *line = clbn__tuning_shipped[i];
        const size_t n = strlen(line);
        char *copy = malloc(n + 1);
        if (!copy)
            return 0;
        memcpy(copy, line, n + 1);
        int found = lookup_text(copy, n, &k, &base, t);
        free(copy);
        if (found)
            return 1;
    }
    return 0;
}

/* An entry line for plan's key with `tuning` (into out, with its newline). */
static size_t format_entry(const db_key *k, const char *kernels, const char *tuning, double ms,
                           char *out, size_t size)
{
    int n = snprintf(out, size, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.4f", MAGIC, kernels, k->platform,
                     k->device, k->driver, k->cu, k->shape, tuning, ms);
    if (n < 0 || (size_t)n >= size)
        return 0;
    int m = snprintf(out + n, size - (size_t)n, "\t%08x\n", (unsigned)fnv1a(out, (size_t)n));
    if (m < 0 || (size_t)(n + m) >= size)
        return 0;
    return (size_t)(n + m);
}

size_t clbn__tuning_db_entry(const clbn_plan *plan, const char *kernels, double ms, char *out,
                             size_t size)
{
    db_key k;
    make_key(plan, &k);
    /* only what differs from the defaults: parameters the environment sets
     * (CLBN_TUNING and its shorthands) keep their effect where the tuner
     * did not choose otherwise */
    char tuning[1024];
    clbn_tuning base;
    clbn__tuning_defaults(plan->ctx, plan->desc.tensor.dtype, &base);
    clbn__tuning_format_diff(&plan->tuning, &base, tuning, sizeof tuning);
    return format_entry(&k, kernels ? kernels : k.kernels, tuning, ms, out, size);
}

void clbn__tuning_db_record(const clbn_plan *plan, double ms)
{
    char path[4096];
    if (!db_path(path, sizeof path, 1))
        return;
    db_key k;
    make_key(plan, &k);
    char entry[LINE_MAX_LEN];
    if (!clbn__tuning_db_entry(plan, NULL, ms, entry, sizeof entry))
        return;
    char lock_path[4200], tmp_path[4200];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", path, (long)getpid());
    const int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock >= 0)
        while (flock(lock, LOCK_EX) != 0 && errno == EINTR)
            ;
    size_t len = 0;
    char *old = read_db(path, &len);
    FILE *f = fopen(tmp_path, "wb");
    int ok = f != NULL;
    if (ok)
        ok = fputs(HEADER, f) >= 0;
    /* keep every valid entry of other keys (dropping damaged lines) */
    for (size_t i = strlen(HEADER); old && ok && i < len;) {
        char *nl = memchr(old + i, '\n', len - i);
        if (!nl)
            break;
        const size_t n = (size_t)(nl - (old + i));
        char line[LINE_MAX_LEN], copy[LINE_MAX_LEN];
        if (n < LINE_MAX_LEN) {
            memcpy(line, old + i, n);
            line[n] = '\0';
            memcpy(copy, line, n + 1);
            char *fl[F_COUNT];
            if (split_entry(copy, n, fl) &&
                !(entry_matches(fl, &k) && strcmp(fl[F_KERNELS], k.kernels) == 0))
                ok = fprintf(f, "%s\n", line) >= 0;
        }
        i += n + 1;
    }
    free(old);
    if (ok)
        ok = fputs(entry, f) >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (ok)
        ok = rename(tmp_path, path) == 0;
    if (!ok && f)
        unlink(tmp_path);
    if (lock >= 0) {
        flock(lock, LOCK_UN);
        close(lock);
    }
}
