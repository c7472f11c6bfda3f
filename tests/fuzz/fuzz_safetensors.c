/* libFuzzer target for the safetensors loader (clbn_layer_load_safetensors):
 * each input is a whole file, read through the same code the loader runs
 * (src/safetensors_parse.c: header length, cJSON, every entry's dtype, shape
 * and offsets, coverage of the data, the tensors' lookup and reading). Only the
 * file I/O and the final write into the layer's OpenCL buffers are left out,
 * so no OpenCL device is needed. AddressSanitizer catches any read outside the
 * input or the buffers; the checks below catch a loader that reports success
 * without having filled what it promised.
 *
 * Build and run: tests/fuzz/run_safetensors.sh [SECONDS] */
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem {
    const uint8_t *data;
    size_t size;
} mem;

static int mem_read(void *user, uint64_t offset, void *dst, size_t n)
{
    const mem *m = user;
    /* The parser promises in-bounds reads; make a broken promise loud. */
    if (offset > m->size || n > m->size - offset)
        abort();
    memcpy(dst, m->data + offset, n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mem m = {data, size};
    clbn_st_reader reader = {size, mem_read, &m};
    /* The layers of the seed corpus (BatchNorm2d(4) under "bn.", (8) with no
     * prefix or under "1.", (5) affine = 0, (6) untracked, a float64 (4)), so
     * the fuzzer starts from inputs that load. */
    static uint32_t counters[8];
    static const struct {
        const char *prefix;
        clbn_st_layer layer;
    } configs[] = {
        {"bn.", {4, 4, 1, 1, NULL}}, {NULL, {8, 4, 1, 1, NULL}}, {"1.", {8, 4, 1, 1, NULL}},
        {"", {5, 4, 0, 1, NULL}},    {NULL, {6, 4, 1, 0, NULL}}, {NULL, {4, 8, 1, 1, NULL}},
        {NULL, {8, 4, 1, 1, counters}}, /* a layer with the bad-batch option's counters */
    };
    for (size_t i = 0; i < sizeof configs / sizeof *configs; ++i) {
        const clbn_st_layer *l = &configs[i].layer;
        const size_t bytes = 4 * l->num_features * l->width;
        unsigned char *values = malloc(bytes);
        if (!values)
            abort();
        memset(values, 0xA5, bytes);
        uint64_t nbt = 0xA5A5A5A5A5A5A5A5ull;
        clbn_status st = clbn__safetensors_read_bn(&reader, configs[i].prefix, l, values, &nbt);
        if (st == CLBN_SUCCESS) {
            /* Success means num_batches_tracked was set (0 without tracking) ... */
            if (nbt > (uint64_t)INT64_MAX || (!l->track_running_stats && nbt != 0))
                abort();
        } else if (st != CLBN_ERROR_SAFETENSORS_FORMAT && st != CLBN_ERROR_TENSOR_NOT_FOUND &&
                   st != CLBN_ERROR_STATE_MISMATCH) {
            abort(); /* ... and a failure is one of the documented kinds (no I/O here) */
        }
        free(values);
    }
    return 0;
}
