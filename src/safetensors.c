/* A layer's state as safetensors, the format of PyTorch's and Hugging Face's
 * checkpoints: clbn_layer_load_safetensors and clbn_layer_save_safetensors.
 * The names are PyTorch's state_dict keys of BatchNormNd (prefix + "weight",
 * "bias", "running_mean", "running_var", "num_batches_tracked"), and for a layer
 * with the bad-batch option its skip counters as "skipped_updates" (I64,
 * [C]; optional on load, so PyTorch's files load: the counters are then
 * zeroed). Reading and
 * checking the file is safetensors_parse.c; this file does the I/O and the
 * device side. */
#include "layer.h"
#include "safetensors.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The file as a clbn_st_reader. */
static int file_read(void *user, uint64_t offset, void *dst, size_t n)
{
    FILE *f = user;
    if (offset > (uint64_t)INT64_MAX || fseeko(f, (off_t)offset, SEEK_SET) != 0)
        return -1;
    return fread(dst, 1, n, f) == n ? 0 : -1;
}


clbn_status clbn_layer_load_safetensors(clbn_layer *layer, const char *path, const char *prefix)
{
    if (!layer || !path)
        return CLBN_ERROR_NULL_ARGUMENT;
    const clbn_layer_config *cfg = &layer->config;
    clbn_st_layer want;
    want.num_features = cfg->num_features;
    want.width = clbn__param_size(cfg->dtype);
    want.affine = cfg->affine;
    want.track_running_stats = cfg->track_running_stats;
    want.skipped_updates = NULL;
    clbn_layer_tensor which[4];
    const int count = clbn__layer_state_tensors(cfg, which);

    FILE *f = fopen(path, "rb");
    if (!f)
        return CLBN_ERROR_FILE_IO;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0) {
        fclose(f);
        return CLBN_ERROR_FILE_IO;
    }
    clbn_st_reader reader;
    reader.size = (uint64_t)sb.st_size;
    reader.read = file_read;
    reader.user = f;
    /* Everything is read into host memory and checked first, so the layer
     * changes only when the whole file is good. */
    const size_t vbytes = cfg->num_features * want.width;
    unsigned char *host = malloc(count > 0 ? (size_t)count * vbytes : 1);
    clbn_status st = host ? CLBN_SUCCESS : CLBN_ERROR_OUT_OF_HOST_MEMORY;
    uint64_t nbt = 0;
    /* the skip counters: 0 unless the file has them */
    if (st == CLBN_SUCCESS && layer->skipped &&
        !(want.skipped_updates = calloc(cfg->num_features, sizeof(uint32_t))))
        st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (st == CLBN_SUCCESS)
        st = clbn__safetensors_read_bn(&reader, prefix, &want, host, &nbt);
    fclose(f);
    cl_mem counters = NULL;
    if (st == CLBN_SUCCESS)
        st = clbn__layer_counters_prepare(layer, want.skipped_updates, &counters);
    if (st == CLBN_SUCCESS)
        st = clbn__layer_write_state(layer, which, count, host, nbt);
    if (st == CLBN_SUCCESS)
        clbn__layer_counters_install(layer, counters);
    else if (counters)
        clReleaseMemObject(counters);
    free(want.skipped_updates);
    free(host);
    return st;
}

static void put_le(unsigned char *dst, const unsigned char *src, size_t count, size_t width)
{
    for (size_t i = 0; i < count; ++i, src += width, dst += width) {
        uint64_t v = 0;
        if (width == 8) {
            memcpy(&v, src, 8);
        } else {
            uint32_t w;
            memcpy(&w, src, 4);
            v = w;
        }
        for (size_t k = 0; k < width; ++k)
            dst[k] = (unsigned char)(v >> (8 * k));
    }
}

/* Adds {"dtype": dtype, "shape": [dim] (rank 1) or [] (rank 0),
 * "data_offsets": [begin, end]} under `name`. */
static int add_entry(cJSON *root, const char *name, const char *dtype, int rank, size_t dim,
                     size_t begin, size_t end)
{
    cJSON *e = cJSON_AddObjectToObject(root, name);
    if (!e || !cJSON_AddStringToObject(e, "dtype", dtype))
        return 0;
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *offsets = cJSON_AddArrayToObject(e, "data_offsets");
    if (!shape || !offsets)
        return 0;
    const double values[3] = {(double)dim, (double)begin, (double)end};
    for (int k = rank ? 0 : 1; k < 3; ++k) {
        cJSON *v = cJSON_CreateNumber(values[k]);
        if (!v || !cJSON_AddItemToArray(k == 0 ? shape : offsets, v)) {
            cJSON_Delete(v);
            return 0;
        }
    }
    return 1;
}

clbn_status clbn_layer_save_safetensors(clbn_layer *layer, const char *path, const char *prefix)
{
    if (!layer || !path)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (!prefix)
        prefix = "";
    const clbn_layer_config *cfg = &layer->config;
    const size_t width = clbn__param_size(cfg->dtype), vbytes = cfg->num_features * width;
    const char *dtype = width == 8 ? "F64" : "F32";
    /* The reference writer's order (safetensors' serialize): by dtype, widest
     * first (I64 before F64 and F32), then by name. So the file is byte for
     * byte what safetensors.torch.save_file(bn.state_dict(), path) writes. */
    clbn_layer_tensor which[4];
    int count = 0;
    if (cfg->affine)
        which[count++] = CLBN_BIAS;
    if (cfg->track_running_stats) {
        which[count++] = CLBN_RUNNING_MEAN;
        which[count++] = CLBN_RUNNING_VAR;
    }
    if (cfg->affine)
        which[count++] = CLBN_WEIGHT;
    static const char *const names[] = {
        [CLBN_WEIGHT] = "weight",
        [CLBN_BIAS] = "bias",
        [CLBN_RUNNING_MEAN] = "running_mean",
        [CLBN_RUNNING_VAR] = "running_var",
    };
    /* the I64 tensors first, by name: num_batches_tracked, skipped_updates */
    const size_t nbt_bytes = cfg->track_running_stats ? 8 : 0;
    const size_t sk_bytes = layer->skipped ? 8 * cfg->num_features : 0;
    const size_t i64_bytes = nbt_bytes + sk_bytes;
    const size_t data_len = i64_bytes + (size_t)count * vbytes;
    unsigned char *data = malloc(data_len ? data_len : 1);
    unsigned char *tmp = malloc(vbytes > sk_bytes ? vbytes : sk_bytes);
    const size_t plen = strlen(prefix);
    char *name = malloc(plen + sizeof "num_batches_tracked");
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    clbn_status st = data && tmp && name && root ? CLBN_SUCCESS : CLBN_ERROR_OUT_OF_HOST_MEMORY;

    /* The values, as the layer has them now. */
    if (st == CLBN_SUCCESS && nbt_bytes) {
        const uint64_t nbt = layer->num_batches_tracked;
        for (int k = 0; k < 8; ++k)
            data[k] = (unsigned char)(nbt >> (8 * k));
    }
    if (st == CLBN_SUCCESS && sk_bytes) {
        uint32_t *counts = (uint32_t *)(void *)tmp;
        st = clbn_layer_skipped_updates(layer, counts, cfg->num_features);
        for (size_t c = 0; c < cfg->num_features && st == CLBN_SUCCESS; ++c)
            for (int k = 0; k < 8; ++k)
                data[nbt_bytes + 8 * c + k] = (unsigned char)((uint64_t)counts[c] >> (8 * k));
    }
    for (int i = 0; i < count && st == CLBN_SUCCESS; ++i) {
        st = clbn_layer_read(layer, which[i], tmp, cfg->num_features);
        if (st == CLBN_SUCCESS)
            put_le(data + i64_bytes + (size_t)i * vbytes, tmp, cfg->num_features, width);
    }
    /* The header: one entry per tensor in data order, no metadata. */
    if (st == CLBN_SUCCESS) {
        memcpy(name, prefix, plen);
        int ok = 1;
        if (nbt_bytes) {
            strcpy(name + plen, "num_batches_tracked");
            ok = add_entry(root, name, "I64", 0, 0, 0, 8);
        }
        if (ok && sk_bytes) {
            strcpy(name + plen, "skipped_updates");
            ok = add_entry(root, name, "I64", 1, cfg->num_features, nbt_bytes, i64_bytes);
        }
        for (int i = 0; i < count && ok; ++i) {
            strcpy(name + plen, names[which[i]]);
            ok = add_entry(root, name, dtype, 1, cfg->num_features,
                           i64_bytes + (size_t)i * vbytes, i64_bytes + (size_t)(i + 1) * vbytes);
        }
        if (ok)
            json = cJSON_PrintUnformatted(root);
        if (!json)
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    if (st == CLBN_SUCCESS) {
        /* Padded with spaces so the data starts 8-byte aligned, as the
         * reference writer does. */
        const size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
        unsigned char len8[8];
        for (int k = 0; k < 8; ++k)
            len8[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
        char *tmp_path = malloc(strlen(path) + 5);
        if (!tmp_path) {
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
        } else {
            strcpy(tmp_path, path);
            strcat(tmp_path, ".tmp");
            FILE *f = fopen(tmp_path, "wb");
            int ok = f && fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, jlen, f) == jlen;
            for (size_t k = jlen; ok && k < hlen; ++k)
                ok = fputc(' ', f) != EOF;
            ok = ok && fwrite(data, 1, data_len, f) == data_len;
            if (f)
                ok = (fclose(f) == 0) && ok;
            /* Renamed into place only when complete: a failure never leaves
             * a half-written file under `path`. */
            if (ok)
                ok = rename(tmp_path, path) == 0;
            if (!ok) {
                remove(tmp_path);
                st = CLBN_ERROR_FILE_IO;
            }
            free(tmp_path);
        }
    }
    cJSON_free(json);
    cJSON_Delete(root);
    free(name);
    free(tmp);
    free(data);
    return st;
}
