/*
 * libFuzzer target: clbn_layer_load on arbitrary files.
 *
 * Input: one control byte, then the file. Control bits 0-1 pick one of four
 * layers (3 features affine + tracked, 8 affine only, 1 tracked only, 5
 * neither) so every state layout and STATE_MISMATCH are reachable; bit 7
 * rewrites the file's last 4 bytes with the CRC-32 of the rest, so that
 * mutated headers get past the checksum to the checks behind it.
 *
 * Properties (a violation aborts, which libFuzzer reports as a crash):
 *   - clbn_layer_load never crashes or reads out of bounds (AddressSanitizer);
 *   - it returns CLBN_SUCCESS or one of its documented errors;
 *   - on error every tensor of the layer and num_batches_tracked are unchanged;
 *   - on success the layer holds exactly the file's values and count.
 *
 * Seeds: with CLBN_FUZZ_WRITE_SEEDS=<dir> the first run writes, for every
 * layer, the file clbn_layer_save makes (with and without the CRC bit),
 * truncations of it, and the file offered to a layer of another configuration;
 * tests/fuzz/corpus/layer_load holds them.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NLAYERS 4
#define MAXC 8

static const struct {
    size_t c;
    int affine, track;
} configs[NLAYERS] = {{3, 1, 1}, {8, 1, 0}, {1, 0, 1}, {5, 0, 0}};

static clbn_context *g_ctx;
static clbn_layer *g_layers[NLAYERS];
static char g_path[64], g_orig[NLAYERS][64];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_layer_load: %s\n", what);
    abort();
}

typedef struct state {
    int has[6];
    float t[6][MAXC];
    uint64_t nbt;
} state;

static void read_state(int l, state *s)
{
    memset(s, 0, sizeof *s);
    for (int t = 0; t < 6; ++t) {
        if (!clbn_layer_get_buffer(g_layers[l], (clbn_layer_tensor)t))
            continue;
        s->has[t] = 1;
        if (clbn_layer_read(g_layers[l], (clbn_layer_tensor)t, s->t[t], configs[l].c) != CLBN_SUCCESS)
            die("clbn_layer_read failed");
    }
    s->nbt = clbn_layer_num_batches_tracked(g_layers[l]);
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die("cannot write the input file");
}

static void write_seeds(const char *dir)
{
    uint8_t buf[1 + 64 + 4 * MAXC * 4 + 4];
    for (int l = 0; l < NLAYERS; ++l) {
        FILE *f = fopen(g_orig[l], "rb");
        size_t len = f ? fread(buf + 1, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        const size_t cuts[] = {len, len - 1, len - 4, 64, 63, 12, 0};
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; ++i) {
            for (int crc = 0; crc < 2; ++crc) {
                if (crc && i > 0)
                    continue;
                char name[256];
                snprintf(name, sizeof name, "%s/layer%d_%s%zu", dir, l, crc ? "crc_" : "", cuts[i]);
                buf[0] = (uint8_t)(l | (crc ? 0x80 : 0));
                write_file(name, buf, 1 + cuts[i]);
            }
        }
        /* The whole file offered to the next layer: another configuration. */
        char name[256];
        snprintf(name, sizeof name, "%s/layer%d_into_layer%d", dir, l, (l + 1) % NLAYERS);
        buf[0] = (uint8_t)((l + 1) % NLAYERS);
        write_file(name, buf, 1 + len);
    }
}

static void remove_files(void)
{
    remove(g_path);
    for (int l = 0; l < NLAYERS; ++l)
        remove(g_orig[l]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (clbn_context_create_default(&g_ctx) != CLBN_SUCCESS)
        die("no OpenCL device");
    snprintf(g_path, sizeof g_path, "/tmp/clbn_fuzz_load_%d.state", (int)getpid());
    for (int l = 0; l < NLAYERS; ++l) {
        clbn_layer_config cfg = clbn_layer_config_default(configs[l].c);
        cfg.affine = configs[l].affine;
        cfg.track_running_stats = configs[l].track;
        if (clbn_layer_create(g_ctx, &cfg, &g_layers[l]) != CLBN_SUCCESS)
            die("clbn_layer_create failed");
        /* Values unlike the defaults and a count, so a partial load shows. */
        float v[MAXC];
        for (int t = 0; t < 6; ++t) {
            if (!clbn_layer_get_buffer(g_layers[l], (clbn_layer_tensor)t))
                continue;
            for (size_t c = 0; c < configs[l].c; ++c)
                v[c] = 0.25f * (float)(t + 1) + 0.5f * (float)c;
            clbn_layer_write(g_layers[l], (clbn_layer_tensor)t, v, configs[l].c);
        }
        if (configs[l].track) {
            clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, configs[l].c, 3};
            cl_int err;
            cl_mem x = clCreateBuffer(clbn_context_get_cl_context(g_ctx), CL_MEM_READ_WRITE,
                                      2 * configs[l].c * 3 * sizeof(float), NULL, &err);
            float pat = 1.5f;
            clEnqueueFillBuffer(clbn_context_get_queue(g_ctx), x, &pat, sizeof pat, 0,
                                2 * configs[l].c * 3 * sizeof(float), 0, NULL, NULL);
            clbn_layer_forward(g_layers[l], NULL, &d, x, x, 0, NULL, NULL);
            clbn_layer_forward(g_layers[l], NULL, &d, x, x, 0, NULL, NULL);
            clFinish(clbn_context_get_queue(g_ctx));
            clReleaseMemObject(x);
        }
        snprintf(g_orig[l], sizeof g_orig[l], "/tmp/clbn_fuzz_load_%d_orig%d.state", (int)getpid(), l);
        if (clbn_layer_save(g_layers[l], g_orig[l]) != CLBN_SUCCESS)
            die("clbn_layer_save failed");
    }
    atexit(remove_files);
    const char *seeds = getenv("CLBN_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds)
        write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ctx)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size < 1 || size > 4096)
        return 0;
    const int l = data[0] & 3;
    const size_t len = size - 1;
    uint8_t *file = malloc(len ? len : 1);
    memcpy(file, data + 1, len);
    if ((data[0] & 0x80) && len >= 4) {
        const uint32_t crc = crc32_of(file, len - 4);
        for (int i = 0; i < 4; ++i)
            file[len - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    write_file(g_path, file, len);

    state before, after;
    read_state(l, &before);
    const clbn_status st = clbn_layer_load(g_layers[l], g_path);
    read_state(l, &after);
    if (st != CLBN_SUCCESS) {
        if (st != CLBN_ERROR_FILE_FORMAT && st != CLBN_ERROR_FILE_CHECKSUM && st != CLBN_ERROR_STATE_MISMATCH &&
            st != CLBN_ERROR_FILE_IO)
            die("undocumented status from clbn_layer_load");
        if (memcmp(&before, &after, sizeof before) != 0)
            die("a failed load changed the layer");
    } else {
        /* Exactly the file's values, in file order, and its count. */
        const size_t C = configs[l].c;
        if (len < 64 || (configs[l].track ? after.nbt != get_le(file + 32, 8) : after.nbt != 0))
            die("a successful load did not take num_batches_tracked from the file (or gave one to a "
                "layer without running statistics)");
        const uint8_t *p = file + 64;
        static const int order[4] = {CLBN_WEIGHT, CLBN_BIAS, CLBN_RUNNING_MEAN, CLBN_RUNNING_VAR};
        for (int i = 0; i < 4; ++i) {
            const int t = order[i];
            if (!after.has[t])
                continue;
            for (size_t c = 0; c < C; ++c, p += 4) {
                uint32_t bits = (uint32_t)get_le(p, 4), got;
                memcpy(&got, &after.t[t][c], 4);
                if (bits != got)
                    die("a successful load left a value different from the file's");
            }
        }
        if (memcmp(after.t[CLBN_GRAD_WEIGHT], before.t[CLBN_GRAD_WEIGHT], sizeof after.t[0]) != 0 ||
            memcmp(after.t[CLBN_GRAD_BIAS], before.t[CLBN_GRAD_BIAS], sizeof after.t[0]) != 0)
            die("a load changed the gradients");
        /* Back to the layer's own state for the next input. */
        if (clbn_layer_load(g_layers[l], g_orig[l]) != CLBN_SUCCESS)
            die("reloading the original state failed");
    }
    free(file);
    return 0;
}
