/* Reading a batch-norm state out of a safetensors image (safetensors_parse.c),
 * independent of OpenCL and of files, so that the fuzzer
 * (tests/fuzz/fuzz_safetensors.c) runs exactly the code the loader runs.
 *
 * The format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [C], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * (optionally padded with spaces), then the data; offsets count from the
 * first byte after the header. */
#ifndef CLBN_SAFETENSORS_H
#define CLBN_SAFETENSORS_H

#include "clbn.h"

#include <stddef.h>
#include <stdint.h>

/* The loader refuses longer headers (the reference implementation's limit). */
#define CLBN_ST_MAX_HEADER 100000000u

/* Random access to the file's bytes: `size` bytes in all; read() copies n
 * bytes from `offset` (which the parser has checked lies within size) and
 * returns 0, or non-zero on an I/O error. */
typedef struct clbn_st_reader {
    uint64_t size;
    int (*read)(void *user, uint64_t offset, void *dst, size_t n);
    void *user;
} clbn_st_reader;

/* What the layer holds: num_features values of `width` bytes (4: F32, 8: F64)
 * per tensor; weight and bias when affine; running_mean, running_var and
 * num_batches_tracked when track_running_stats. */
typedef struct clbn_st_layer {
    size_t num_features;
    size_t width;
    int affine;
    int track_running_stats;
    /* the bad-batch option's counters (issue 16): NULL when the layer has
     * none; otherwise num_features values read from prefix +
     * "skipped_updates" (I64, shape [num_features], each in [0, 2^32)) when
     * the file has that tensor (optional: PyTorch files lack it), left
     * unchanged when it does not */
    uint32_t *skipped_updates;
} clbn_st_layer;

/* Validates the whole file (header length, JSON, every entry's dtype, shape
 * and data_offsets, the data covered exactly, without holes or overlaps) and
 * reads the layer's tensors named prefix + "weight", "bias", "running_mean",
 * "running_var" (in that order, those the layer has, into `values`: host
 * byte order, num_features values each) and "num_batches_tracked" (I64, a
 * scalar, >= 0) into *num_batches_tracked (0 when the layer does not track).
 * Only the bytes of those tensors are read after the header. Unknown dtypes
 * are allowed for the file's other tensors (their size is then not checked).
 * Errors: CLBN_ERROR_SAFETENSORS_FORMAT (malformed, or a negative count),
 * CLBN_ERROR_TENSOR_NOT_FOUND,
 * CLBN_ERROR_STATE_MISMATCH (wrong dtype or shape, or tensors the layer's
 * configuration does not have), CLBN_ERROR_FILE_IO, CLBN_ERROR_OUT_OF_HOST_MEMORY.
 * `values` may be partly written on error. */
clbn_status clbn__safetensors_read_bn(const clbn_st_reader *reader, const char *prefix,
                                      const clbn_st_layer *layer, void *values,
                                      uint64_t *num_batches_tracked);

#endif
