/* The layer state file: clbn_layer_save and clbn_layer_load.
 *
 * Format version 1 or 2, every number little-endian:
 *   offset  size  field
 *        0     8  magic "CLBNLAYR"
 *        8     4  format version (1)
 *       12     4  header size in bytes (64)
 *       16     4  dtype (clbn_dtype of the layer; values are float64 for
 *                 CLBN_FLOAT64, float32 otherwise)
 *       20     4  flags: bit 0 affine, bit 1 track_running_stats, bit 2 (version 2
 *                 only) the bad-batch option's skip counters follow the tensors
 *       24     8  num_features C
 *       32     8  num_batches_tracked
 *       40     8  epsilon (float64; informational: load keeps the layer's own)
 *       48     8  momentum (float64; -1 for the cumulative average; informational)
 *       56     8  payload size in bytes
 *       64     -  payload: weight[C], bias[C] (if affine), running_mean[C],
 *                 running_var[C] (if track_running_stats), then (bit 2)
 *                 skipped_updates[C] as uint32
 *     end      4  CRC-32 (IEEE 802.3, as zlib's crc32) of every byte before it
 *
 * Version 2 (issue 16) is written only by a layer with skip counters
 * (cfg.skip_nonfinite_update), so every other file stays version 1, readable
 * by older clbn. Loading takes both: the file's counters replace the layer's
 * (a layer without counters ignores them), and a file without counters
 * zeroes the counters of a layer that has them.
 */
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC "CLBNLAYR"
#define STATE_VERSION 1u
#define STATE_VERSION_COUNTERS 2u /* with the skip counters */
#define STATE_FLAG_COUNTERS 4u
#define STATE_HEADER 64u

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_u64(p, v);
}

static double get_f64(const unsigned char *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

/* Per-channel values between host order and little-endian file order. */
static void values_to_le(unsigned char *dst, const unsigned char *src, size_t count, size_t width)
{
    for (size_t i = 0; i < count; ++i) {
        if (width == 8) {
            uint64_t v;
            memcpy(&v, src + 8 * i, 8);
            put_u64(dst + 8 * i, v);
        } else {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            put_u32(dst + 4 * i, v);
        }
    }
}

static void values_from_le(unsigned char *dst, const unsigned char *src, size_t count, size_t width)
{
    for (size_t i = 0; i < count; ++i) {
        if (width == 8) {
            uint64_t v = get_u64(src + 8 * i);
            memcpy(dst + 8 * i, &v, 8);
        } else {
            uint32_t v = get_u32(src + 4 * i);
            memcpy(dst + 4 * i, &v, 4);
        }
    }
}


clbn_status clbn_layer_save(clbn_layer *layer, const char *path)
{
    if (!layer || !path)
        return CLBN_ERROR_NULL_ARGUMENT;
    const clbn_layer_config *cfg = &layer->config;
    const size_t width = clbn__param_size(cfg->dtype), vbytes = cfg->num_features * width;
    clbn_layer_tensor which[4];
    const int count = clbn__layer_state_tensors(cfg, which);
    const int counters = layer->skipped != NULL;
    const size_t cbytes = counters ? cfg->num_features * 4 : 0;
    const size_t payload = (size_t)count * vbytes + cbytes, total = STATE_HEADER + payload + 4;
    unsigned char *buf = calloc(1, total);
    unsigned char *tmp = malloc(vbytes > cbytes ? vbytes : cbytes);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    memcpy(buf, STATE_MAGIC, 8);
    put_u32(buf + 8, counters ? STATE_VERSION_COUNTERS : STATE_VERSION);
    put_u32(buf + 12, STATE_HEADER);
    put_u32(buf + 16, (uint32_t)cfg->dtype);
    put_u32(buf + 20, (cfg->affine ? 1u : 0u) | (cfg->track_running_stats ? 2u : 0u) |
                          (counters ? STATE_FLAG_COUNTERS : 0u));
    put_u64(buf + 24, cfg->num_features);
    put_u64(buf + 32, layer->num_batches_tracked);
    put_f64(buf + 40, cfg->epsilon);
    put_f64(buf + 48, cfg->momentum);
    put_u64(buf + 56, payload);
    clbn_status st = CLBN_SUCCESS;
    for (int i = 0; i < count && st == CLBN_SUCCESS; ++i) {
        st = clbn_layer_read(layer, which[i], tmp, cfg->num_features);
        if (st == CLBN_SUCCESS)
            values_to_le(buf + STATE_HEADER + i * vbytes, tmp, cfg->num_features, width);
    }
    if (st == CLBN_SUCCESS && counters) {
        st = clbn_layer_skipped_updates(layer, (uint32_t *)(void *)tmp, cfg->num_features);
        if (st == CLBN_SUCCESS)
            values_to_le(buf + STATE_HEADER + (size_t)count * vbytes, tmp, cfg->num_features, 4);
    }
    free(tmp);
    if (st == CLBN_SUCCESS) {
        put_u32(buf + total - 4, crc32_update(0, buf, total - 4));
        /* Write beside the target and rename, so a failure never leaves a
         * half-written file under `path`. */
        size_t plen = strlen(path);
        char *tmp_path = malloc(plen + 5);
        if (!tmp_path) {
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
        } else {
            memcpy(tmp_path, path, plen);
            memcpy(tmp_path + plen, ".tmp", 5);
            FILE *f = fopen(tmp_path, "wb");
            int ok = f && fwrite(buf, 1, total, f) == total;
            if (f)
                ok = (fclose(f) == 0) && ok;
            if (ok)
                ok = rename(tmp_path, path) == 0;
            if (!ok) {
                remove(tmp_path);
                st = CLBN_ERROR_FILE_IO;
            }
            free(tmp_path);
        }
    }
    free(buf);
    return st;
}

clbn_status clbn_layer_load(clbn_layer *layer, const char *path)
{
    if (!layer || !path)
        return CLBN_ERROR_NULL_ARGUMENT;
    const clbn_layer_config *cfg = &layer->config;
    const size_t width = clbn__param_size(cfg->dtype), vbytes = cfg->num_features * width;
    clbn_layer_tensor which[4];
    const int count = clbn__layer_state_tensors(cfg, which);
    const size_t tensors_bytes = (size_t)count * vbytes, cbytes = cfg->num_features * 4;
    size_t payload = tensors_bytes, total = 0;
    int counters = 0; /* the file holds skip counters */

    FILE *f = fopen(path, "rb");
    if (!f)
        return CLBN_ERROR_FILE_IO;
    unsigned char header[STATE_HEADER];
    clbn_status st = CLBN_SUCCESS;
    const size_t got = fread(header, 1, STATE_HEADER, f);
    if (got != STATE_HEADER && ferror(f))
        st = CLBN_ERROR_FILE_IO; /* e.g. a directory */
    else if (got != STATE_HEADER || memcmp(header, STATE_MAGIC, 8) != 0 ||
             (get_u32(header + 8) != STATE_VERSION &&
              get_u32(header + 8) != STATE_VERSION_COUNTERS) ||
             get_u32(header + 12) != STATE_HEADER ||
             /* version 2 is the version of the counters */
             (get_u32(header + 8) == STATE_VERSION_COUNTERS &&
              !(get_u32(header + 20) & STATE_FLAG_COUNTERS)))
        st = CLBN_ERROR_FILE_FORMAT;
    else if (get_u32(header + 16) != (uint32_t)cfg->dtype ||
             /* the counters' flag exactly in version 2; any other unknown
              * flag is a layer this one is not */
             get_u32(header + 20) !=
                 ((cfg->affine ? 1u : 0u) | (cfg->track_running_stats ? 2u : 0u) |
                  (get_u32(header + 8) == STATE_VERSION_COUNTERS ? STATE_FLAG_COUNTERS : 0u)) ||
             get_u64(header + 24) != cfg->num_features)
        st = CLBN_ERROR_STATE_MISMATCH;
    if (st == CLBN_SUCCESS) {
        /* the counters' size comes from the layer (C), not from the file */
        counters = (get_u32(header + 20) & STATE_FLAG_COUNTERS) != 0;
        payload = tensors_bytes + (counters ? cbytes : 0);
        total = STATE_HEADER + payload + 4;
        if (get_u64(header + 56) != payload)
            st = CLBN_ERROR_FILE_FORMAT;
    }
    if (st != CLBN_SUCCESS)
        ; /* reported as found above */
    else if (clbn__check_epsilon(get_f64(header + 40)) != CLBN_SUCCESS ||
             (get_f64(header + 48) != CLBN_MOMENTUM_CUMULATIVE &&
              clbn__check_momentum(get_f64(header + 48)) != CLBN_SUCCESS))
        st = CLBN_ERROR_FILE_FORMAT; /* recorded for information; must still be sane */
    /* The sizes now come from the layer, not the file: nothing the file says
     * can make us allocate or read more than this layer holds. */
    unsigned char *buf = NULL;
    if (st == CLBN_SUCCESS) {
        buf = malloc(total);
        if (!buf)
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    if (st == CLBN_SUCCESS) {
        memcpy(buf, header, STATE_HEADER);
        size_t rest = total - STATE_HEADER;
        int extra;
        if (fread(buf + STATE_HEADER, 1, rest, f) != rest)
            st = ferror(f) ? CLBN_ERROR_FILE_IO : CLBN_ERROR_FILE_FORMAT; /* unreadable or truncated */
        else if ((extra = fgetc(f)) != EOF)
            st = CLBN_ERROR_FILE_FORMAT; /* trailing bytes */
        else if (crc32_update(0, buf, total - 4) != get_u32(buf + total - 4))
            st = CLBN_ERROR_FILE_CHECKSUM;
        (void)extra;
    }
    fclose(f);
    if (st == CLBN_SUCCESS) {
        unsigned char *host = malloc(tensors_bytes > 0 ? tensors_bytes : 1);
        uint32_t *skipped = calloc(cfg->num_features, sizeof *skipped); /* none in the file: 0 */
        cl_mem new_counters = NULL;
        if (!host || !skipped) {
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
        } else {
            for (int i = 0; i < count; ++i)
                values_from_le(host + i * vbytes, buf + STATE_HEADER + i * vbytes, cfg->num_features, width);
            if (counters)
                values_from_le((unsigned char *)skipped, buf + STATE_HEADER + tensors_bytes,
                               cfg->num_features, 4);
            st = clbn__layer_counters_prepare(layer, skipped, &new_counters);
            if (st == CLBN_SUCCESS)
                st = clbn__layer_write_state(layer, which, count, host, get_u64(header + 32));
            if (st == CLBN_SUCCESS)
                clbn__layer_counters_install(layer, new_counters);
            else if (new_counters)
                clReleaseMemObject(new_counters);
        }
        free(host);
        free(skipped);
    }
    free(buf);
    return st;
}
