/* PyTorch BatchNorm state as safetensors (clbn_layer_load_safetensors,
 * clbn_layer_save_safetensors), against files written from real
 * torch.nn.BatchNorm state_dicts and hand-made malformed variants
 * (tests/data/safetensors/, made by its generate.py):
 *   - every value and num_batches_tracked loaded exactly, with and without a
 *     prefix, affine = 0 and track_running_stats = 0 layers;
 *   - the loaded layer's eval() reproduces torch's output;
 *   - a loaded state saved again is byte for byte the file torch's state_dict
 *     gave (the reference writer's layout), and save/load round trips with any
 *     prefix;
 *   - malformed, truncated or corrupted files give the expected status and
 *     leave the layer unchanged. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CLBN_SAFETENSORS_DATA_DIR
#error "CLBN_SAFETENSORS_DATA_DIR must name tests/data/safetensors"
#endif
#define DATA CLBN_SAFETENSORS_DATA_DIR "/"

static char g_tmp[256];

static const char *tmp_path(const char *name)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/clbn_check_safetensors_%d_%s", (int)getpid(), name);
    return g_tmp;
}

static clbn_layer *make_layer(size_t c, int affine, int track)
{
    clbn_layer_config cfg = clbn_layer_config_default(c);
    cfg.affine = affine;
    cfg.track_running_stats = track;
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    return layer;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = tu_alloc((size_t)n + 1);
    ck_assert((long)fread(buf, 1, (size_t)n, f) == n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const unsigned char *buf, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert(fwrite(buf, 1, size, f) == size);
    ck_assert(fclose(f) == 0);
}

/* Everything a load may change, for "unchanged" checks. */
typedef struct state {
    float t[4][16];
    uint64_t nbt;
} state;

static state get_state(clbn_layer *layer, size_t c)
{
    state s;
    memset(&s, 0, sizeof s);
    ck_assert(c <= 16);
    for (int t = CLBN_WEIGHT; t <= CLBN_RUNNING_VAR; ++t)
        if (clbn_layer_get_buffer(layer, (clbn_layer_tensor)t))
            TU_OK(clbn_layer_read(layer, (clbn_layer_tensor)t, s.t[t], c));
    s.nbt = clbn_layer_num_batches_tracked(layer);
    return s;
}

static void assert_same_state(const state *a, const state *b, const char *what)
{
    ck_assert_msg(memcmp(a->t, b->t, sizeof a->t) == 0, "%s: the layer's values changed", what);
    ck_assert_msg(a->nbt == b->nbt, "%s: num_batches_tracked changed", what);
}

/* A state with recognizable values and a count, so a load that changed
 * anything would show. */
static void scramble(clbn_layer *layer, size_t c, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    float v[16];
    for (int t = CLBN_WEIGHT; t <= CLBN_RUNNING_VAR; ++t) {
        if (!clbn_layer_get_buffer(layer, (clbn_layer_tensor)t))
            continue;
        tu_fill_uniform(&rng, v, c, 0.25, 4.0);
        TU_OK(clbn_layer_write(layer, (clbn_layer_tensor)t, v, c));
    }
}

/* ---- Files from torch state_dicts --------------------------------------- */

/* One line of expected.txt: file, prefix ("-" for none), tensor, values. */
typedef struct expect_line {
    char file[64], prefix[16], tensor[32];
    double values[16];
    size_t count;
} expect_line;

static size_t read_expected(expect_line *out, size_t max)
{
    FILE *f = fopen(DATA "expected.txt", "r");
    ck_assert_msg(f != NULL, "cannot open expected.txt");
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        ck_assert(n < max);
        expect_line *e = &out[n++];
        char *save = NULL;
        char *tok = strtok_r(line, " \n", &save);
        snprintf(e->file, sizeof e->file, "%s", tok);
        snprintf(e->prefix, sizeof e->prefix, "%s", strtok_r(NULL, " \n", &save));
        snprintf(e->tensor, sizeof e->tensor, "%s", strtok_r(NULL, " \n", &save));
        e->count = 0;
        while ((tok = strtok_r(NULL, " \n", &save)) != NULL) {
            ck_assert(e->count < 16);
            e->values[e->count++] = strtod(tok, NULL); /* C99 reads float.hex() */
        }
    }
    fclose(f);
    return n;
}

typedef struct torch_file {
    const char *file, *prefix;
    size_t c;
    int affine, track;
} torch_file;

static const torch_file torch_files[] = {
    {"bn2d.safetensors", NULL, 8, 1, 1},
    {"model.safetensors", "1.", 8, 1, 1},
    {"bn1d_affine_false.safetensors", "", 5, 0, 1},
    {"bn2d_no_tracking.safetensors", NULL, 6, 1, 0},
};

START_TEST(test_load_torch_files)
{
    static const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
    expect_line *lines = tu_alloc(32 * sizeof *lines);
    const size_t nlines = read_expected(lines, 32);
    for (size_t k = 0; k < sizeof torch_files / sizeof *torch_files; ++k) {
        const torch_file *tf = &torch_files[k];
        clbn_layer *layer = make_layer(tf->c, tf->affine, tf->track);
        scramble(layer, tf->c, 10 + k);
        char path[512];
        snprintf(path, sizeof path, DATA "%s", tf->file);
        TU_OK(clbn_layer_load_safetensors(layer, path, tf->prefix));
        size_t checked = 0;
        for (size_t i = 0; i < nlines; ++i) {
            const expect_line *e = &lines[i];
            if (strcmp(e->file, tf->file) != 0)
                continue;
            ++checked;
            if (strcmp(e->tensor, "num_batches_tracked") == 0) {
                ck_assert_msg(clbn_layer_num_batches_tracked(layer) == (uint64_t)e->values[0],
                              "%s: num_batches_tracked %llu, want %.0f", tf->file,
                              (unsigned long long)clbn_layer_num_batches_tracked(layer),
                              e->values[0]);
                continue;
            }
            int t = 0;
            while (t < 4 && strcmp(names[t], e->tensor) != 0)
                ++t;
            ck_assert_msg(t < 4 && e->count == tf->c, "%s: bad line for %s", tf->file, e->tensor);
            float got[16];
            TU_OK(clbn_layer_read(layer, (clbn_layer_tensor)t, got, tf->c));
            for (size_t j = 0; j < tf->c; ++j)
                ck_assert_msg(got[j] == (float)e->values[j], "%s %s[%zu]: %.9g, want %.9g",
                              tf->file, e->tensor, j, (double)got[j], e->values[j]);
        }
        ck_assert_msg(checked == (size_t)(2 * tf->affine + 3 * tf->track), "%s: %zu lines",
                      tf->file, checked);
        if (!tf->track)
            ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
        clbn_layer_release(layer);
    }
    free(lines);
}
END_TEST

/* The loaded BatchNorm2d(8) in eval() computes what torch's did. */
START_TEST(test_loaded_layer_eval_matches_torch)
{
    const size_t N = 2, C = 8, S = 9, count = N * C * S;
    clbn_layer *layer = make_layer(C, 1, 1);
    TU_OK(clbn_layer_load_safetensors(layer, DATA "bn2d.safetensors", NULL));
    TU_OK(clbn_layer_set_training(layer, 0));
    float *x = tu_load_f32le(DATA "bn2d_eval_x.f32", count);
    float *want = tu_load_f32le(DATA "bn2d_eval_y.f32", count);
    cl_mem mx = tu_buffer_floats(x, count), my = tu_buffer_nan(count);
    const clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    TU_OK(clbn_layer_forward(layer, NULL, &desc, mx, my, 0, NULL, NULL));
    float *got = tu_floats(count);
    tu_read_floats(my, got, count);
    double *ref = tu_doubles(count);
    for (size_t i = 0; i < count; ++i)
        ref[i] = want[i];
    TU_ASSERT_CLOSE("bn2d eval vs torch", got, ref, count, 1e-5, 1e-5 * tu_max_abs(ref, count));
    free(x);
    free(want);
    free(got);
    free(ref);
    tu_release(mx);
    tu_release(my);
    clbn_layer_release(layer);
}
END_TEST

/* Loaded and saved again: the very bytes torch's state_dict gave. */
START_TEST(test_save_matches_reference_layout)
{
    const torch_file *own[] = {&torch_files[0], &torch_files[2], &torch_files[3]};
    for (int k = 0; k < 3; ++k) {
        const torch_file *tf = own[k];
        char src[512];
        snprintf(src, sizeof src, DATA "%s", tf->file);
        clbn_layer *layer = make_layer(tf->c, tf->affine, tf->track);
        TU_OK(clbn_layer_load_safetensors(layer, src, tf->prefix));
        const char *out = tmp_path("resaved.safetensors");
        TU_OK(clbn_layer_save_safetensors(layer, out, NULL));
        size_t na, nb;
        unsigned char *a = read_file(src, &na), *b = read_file(out, &nb);
        ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "%s: saved again, the bytes differ",
                      tf->file);
        free(a);
        free(b);
        remove(out);
        clbn_layer_release(layer);
    }
}
END_TEST

/* Any prefix (JSON escapes included) round trips; trained state survives. */
START_TEST(test_round_trip)
{
    const char *prefixes[] = {NULL, "", "bn1.", "layer1.0.bn1.", "we\"ird\\ name\t\x01/ü."};
    const size_t C = 12;
    clbn_layer *a = make_layer(C, 1, 1);
    scramble(a, C, 77);
    float x[2 * 12 * 5];
    tu_rng rng;
    tu_rng_seed(&rng, 78);
    tu_fill_uniform(&rng, x, 120, -3, 3);
    cl_mem mx = tu_buffer_floats(x, 120);
    const clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C, 5};
    for (int i = 0; i < 3; ++i)
        TU_OK(clbn_layer_forward(a, NULL, &desc, mx, mx, 0, NULL, NULL));
    const state sa = get_state(a, C);
    ck_assert_uint_eq(sa.nbt, 3);
    const char *path = tmp_path("round_trip.safetensors");
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; ++p) {
        TU_OK(clbn_layer_save_safetensors(a, path, prefixes[p]));
        clbn_layer *b = make_layer(C, 1, 1);
        TU_OK(clbn_layer_load_safetensors(b, path, prefixes[p]));
        const state sb = get_state(b, C);
        assert_same_state(&sa, &sb, prefixes[p] ? prefixes[p] : "(NULL)");
        if (prefixes[p] && prefixes[p][0]) /* the names carry the prefix */
            TU_EXPECT(clbn_layer_load_safetensors(b, path, NULL), CLBN_ERROR_TENSOR_NOT_FOUND);
        clbn_layer_release(b);
    }
    /* Configurations without weights or running statistics. */
    for (int affine = 0; affine < 2; ++affine)
        for (int track = 0; track < 2; ++track) {
            clbn_layer *c1 = make_layer(C, affine, track), *c2 = make_layer(C, affine, track);
            scramble(c1, C, 79);
            TU_OK(clbn_layer_save_safetensors(c1, path, "m."));
            TU_OK(clbn_layer_load_safetensors(c2, path, "m."));
            const state s1 = get_state(c1, C), s2 = get_state(c2, C);
            assert_same_state(&s1, &s2, "affine/track variants");
            clbn_layer_release(c1);
            clbn_layer_release(c2);
        }
    remove(path);
    tu_release(mx);
    clbn_layer_release(a);
}
END_TEST

/* ---- Errors --------------------------------------------------------------- */

static clbn_status status_by_name(const char *name)
{
    for (int s = 0; s >= -200; --s)
        if (strcmp(clbn_status_name((clbn_status)s), name) == 0)
            return (clbn_status)s;
    ck_abort_msg("unknown status %s", name);
    return CLBN_SUCCESS;
}

/* Each hand-made file gives its status; a failure changes nothing. */
START_TEST(test_malformed_files)
{
    FILE *f = fopen(DATA "malformed/cases.txt", "r");
    ck_assert(f != NULL);
    char line[512];
    int ncases = 0, nvalid = 0;
    clbn_layer *layer = make_layer(4, 1, 1);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        char name[128], status[128];
        ck_assert(sscanf(line, "%127s %127s", name, status) == 2);
        char path[512];
        snprintf(path, sizeof path, DATA "malformed/%s.safetensors", name);
        scramble(layer, 4, (uint64_t)ncases);
        const state before = get_state(layer, 4);
        const clbn_status want = status_by_name(status);
        const clbn_status got = clbn_layer_load_safetensors(layer, path, "bn.");
        ck_assert_msg(got == want, "%s: %s, expected %s", name, clbn_status_name(got), status);
        if (want == CLBN_SUCCESS) {
            const float w[4] = {1.5f, 0.5f, 1.25f, 0.75f}, v[4] = {0.5f, 2.0f, 4.0f, 8.0f};
            float got_w[4], got_v[4];
            TU_OK(clbn_layer_read(layer, CLBN_WEIGHT, got_w, 4));
            TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, got_v, 4));
            ck_assert(memcmp(w, got_w, sizeof w) == 0 && memcmp(v, got_v, sizeof v) == 0);
            ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 12);
            ++nvalid;
        } else {
            const state after = get_state(layer, 4);
            assert_same_state(&before, &after, name);
        }
        ++ncases;
    }
    fclose(f);
    ck_assert_int_ge(ncases, 40);
    ck_assert_int_eq(nvalid, 2);
    clbn_layer_release(layer);
}
END_TEST

/* Every truncation of a good file, and every single-byte corruption of its
 * header: an error (or, for a harmless byte, success), never a crash, and a
 * failure never changes the layer. */
START_TEST(test_truncated_and_corrupted)
{
    size_t size;
    unsigned char *good = read_file(DATA "malformed/valid.safetensors", &size);
    const char *path = tmp_path("damaged.safetensors");
    clbn_layer *layer = make_layer(4, 1, 1);
    scramble(layer, 4, 5);
    state before = get_state(layer, 4);
    for (size_t keep = 0; keep < size; ++keep) {
        write_file(path, good, keep);
        clbn_status st = clbn_layer_load_safetensors(layer, path, "bn.");
        ck_assert_msg(st == CLBN_ERROR_SAFETENSORS_FORMAT, "cut to %zu bytes: %s", keep,
                      clbn_status_name(st));
    }
    const size_t header_end = 8 + (size_t)good[0] + ((size_t)good[1] << 8);
    unsigned char *bad = tu_alloc(size);
    size_t loaded = 0, rejected = size;
    for (size_t at = 0; at < header_end; ++at) {
        static const unsigned char subs[] = {'"', '{', '}', ',', '0', '9', 'x', ' ', 0xff};
        for (size_t s = 0; s < sizeof subs; ++s) {
            if (good[at] == subs[s])
                continue;
            memcpy(bad, good, size);
            bad[at] = subs[s];
            write_file(path, bad, size);
            clbn_status st = clbn_layer_load_safetensors(layer, path, "bn.");
            if (st == CLBN_SUCCESS) {
                ++loaded; /* e.g. a space in the padding: reset for the next one */
                scramble(layer, 4, 5);
                before = get_state(layer, 4);
                continue;
            }
            ck_assert_msg(st == CLBN_ERROR_SAFETENSORS_FORMAT || st == CLBN_ERROR_STATE_MISMATCH ||
                              st == CLBN_ERROR_TENSOR_NOT_FOUND,
                          "byte %zu = 0x%02x: %s", at, subs[s], clbn_status_name(st));
            ++rejected;
            const state after = get_state(layer, 4);
            assert_same_state(&before, &after, "corrupted header");
        }
    }
    printf("safetensors: %zu truncations and header corruptions rejected, %zu harmless ones loaded\n",
           rejected, loaded);
    free(bad);
    free(good);
    remove(path);
    clbn_layer_release(layer);
}
END_TEST

/* The format requires a UTF-8 JSON header: invalid bytes, overlong
 * encodings, encoded surrogates and unpaired surrogate escapes, in another
 * tensor's name or in __metadata__, are refused with
 * CLBN_ERROR_SAFETENSORS_FORMAT and leave the layer as it was; the same
 * files with valid UTF-8 in their place load (so each refusal is the
 * bytes'). */
static void put_header(const char *path, const unsigned char *good, size_t size, const char *before_conv,
                       const char *meta)
{
    const size_t hlen = (size_t)good[0] | ((size_t)good[1] << 8);
    const char *h = (const char *)good + 8;
    const char *conv = strstr(h, "\"conv");
    ck_assert(conv != NULL && (size_t)(conv - h) < hlen);
    char header[1024];
    size_t n = 0;
    n += (size_t)snprintf(header + n, sizeof header - n, "{");
    if (meta)
        n += (size_t)snprintf(header + n, sizeof header - n, "\"__metadata__\":{\"note\":\"%s\"},", meta);
    const size_t upto = (size_t)(conv - h) + 5; /* through "conv */
    ck_assert(n + upto + hlen + 64 < sizeof header);
    memcpy(header + n, h + 1, upto - 1);
    n += upto - 1;
    if (before_conv)
        n += (size_t)snprintf(header + n, sizeof header - n, "%s", before_conv);
    memcpy(header + n, h + upto, hlen - upto);
    n += hlen - upto;
    unsigned char *file = tu_alloc(8 + n + (size - 8 - hlen));
    for (int k = 0; k < 8; ++k)
        file[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(file + 8, header, n);
    memcpy(file + 8 + n, good + 8 + hlen, size - 8 - hlen);
    write_file(path, file, 8 + n + (size - 8 - hlen));
    free(file);
}

START_TEST(test_non_utf8_headers)
{
    static const char *const bad[] = {
        "\xff", "\xfe", "\x80", "\xbf", "x\xc3", "\xe2\x82", "\xf0\x9f\x98", /* invalid or cut short */
        "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf", "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf", /* overlong */
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\xbd\xed\xb8\x80", /* encoded surrogates (CESU-8 too) */
        "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",               /* above U+10FFFF */
        "\\ud800", "\\udc00", "\\ud83dx", "\\ud83d\\u0041",         /* unpaired surrogate escapes */
    };
    static const char *const good_utf8[] = {"\xc3\xa9", "\xe2\x82\xac", "\xef\xbf\xbf", "\xf0\x9f\x98\x80",
                                            "\xf4\x8f\xbf\xbf", "\\ud83d\\ude00", "\\u00e9", "plain"};
    size_t size;
    unsigned char *good = read_file(DATA "malformed/valid.safetensors", &size);
    const char *path = tmp_path("utf8.safetensors");
    clbn_layer *layer = make_layer(4, 1, 1);
    int refused = 0, loaded = 0;
    for (int where = 0; where < 2; ++where) { /* another tensor's name, __metadata__ */
        for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
            put_header(path, good, size, where == 0 ? bad[i] : NULL, where == 1 ? bad[i] : NULL);
            scramble(layer, 4, 40 + i);
            const state before = get_state(layer, 4);
            const clbn_status st = clbn_layer_load_safetensors(layer, path, "bn.");
            ck_assert_msg(st == CLBN_ERROR_SAFETENSORS_FORMAT, "bad UTF-8 case %zu in the %s: %s", i,
                          where ? "metadata" : "name", clbn_status_name(st));
            const state after = get_state(layer, 4);
            assert_same_state(&before, &after, "non-UTF-8 header");
            ++refused;
        }
        for (size_t i = 0; i < sizeof good_utf8 / sizeof *good_utf8; ++i) {
            put_header(path, good, size, where == 0 ? good_utf8[i] : NULL, where == 1 ? good_utf8[i] : NULL);
            const clbn_status st = clbn_layer_load_safetensors(layer, path, "bn.");
            ck_assert_msg(st == CLBN_SUCCESS, "valid UTF-8 case %zu in the %s: %s", i,
                          where ? "metadata" : "name", clbn_status_name(st));
            ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 12);
            ++loaded;
        }
    }
    printf("safetensors: %d non-UTF-8 headers refused, %d UTF-8 controls loaded\n", refused, loaded);
    remove(path);
    free(good);
    clbn_layer_release(layer);
}
END_TEST

START_TEST(test_errors)
{
    clbn_layer *layer = make_layer(8, 1, 1);
    scramble(layer, 8, 11);
    const state before = get_state(layer, 8);
    TU_EXPECT(clbn_layer_load_safetensors(NULL, DATA "bn2d.safetensors", NULL),
              CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_load_safetensors(layer, NULL, NULL), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_save_safetensors(NULL, "x", NULL), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_save_safetensors(layer, NULL, NULL), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_load_safetensors(layer, "/nonexistent/bn.safetensors", NULL),
              CLBN_ERROR_FILE_IO);
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA, NULL), CLBN_ERROR_FILE_IO); /* a folder */
    TU_EXPECT(clbn_layer_save_safetensors(layer, "/nonexistent/bn.safetensors", NULL),
              CLBN_ERROR_FILE_IO);
    /* Files for other layers. */
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA "bn2d_f64.safetensors", NULL),
              CLBN_ERROR_STATE_MISMATCH); /* F64 into float32 */
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA "model.safetensors", NULL),
              CLBN_ERROR_TENSOR_NOT_FOUND); /* no prefix: "weight" is not there */
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA "model.safetensors", "0."),
              CLBN_ERROR_STATE_MISMATCH); /* the conv's (8,3,3,3) weight */
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA "bn1d_affine_false.safetensors", NULL),
              CLBN_ERROR_TENSOR_NOT_FOUND); /* no weight */
    TU_EXPECT(clbn_layer_load_safetensors(layer, DATA "bn2d_no_tracking.safetensors", NULL),
              CLBN_ERROR_STATE_MISMATCH); /* 6 channels */
    const state after = get_state(layer, 8);
    assert_same_state(&before, &after, "errors");

    clbn_layer *wider = make_layer(9, 1, 1), *plain = make_layer(8, 0, 1), *untracked = make_layer(8, 1, 0);
    TU_EXPECT(clbn_layer_load_safetensors(wider, DATA "bn2d.safetensors", NULL),
              CLBN_ERROR_STATE_MISMATCH);
    TU_EXPECT(clbn_layer_load_safetensors(plain, DATA "bn2d.safetensors", NULL),
              CLBN_ERROR_STATE_MISMATCH); /* weights for an affine = 0 layer */
    TU_EXPECT(clbn_layer_load_safetensors(untracked, DATA "bn2d.safetensors", NULL),
              CLBN_ERROR_STATE_MISMATCH); /* running statistics for an untracked layer */
    clbn_layer_release(wider);
    clbn_layer_release(plain);
    clbn_layer_release(untracked);
    clbn_layer_release(layer);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_load_torch_files);
    tcase_add_test(tc, test_loaded_layer_eval_matches_torch);
    tcase_add_test(tc, test_save_matches_reference_layout);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_malformed_files);
    tcase_add_test(tc, test_truncated_and_corrupted);
    tcase_add_test(tc, test_non_utf8_headers);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(safetensors_suite());
}
