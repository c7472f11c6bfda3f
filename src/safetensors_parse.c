/* The safetensors reader behind clbn_layer_load_safetensors (see
 * safetensors.h). The JSON header is parsed by cJSON; this file checks what
 * the format requires of it, and every offset before anything is read:
 *   - the header length fits the file and CLBN_ST_MAX_HEADER;
 *   - the header is one JSON object (then only whitespace padding), without
 *     NUL bytes or \u0000 escapes (which would cut a name short);
 *   - "__metadata__", when present, maps strings to strings;
 *   - every other entry has a string "dtype", a "shape" of non-negative
 *     integers and "data_offsets" [begin, end] with begin <= end <= data size;
 *     for known dtypes end - begin = product(shape) * element size;
 *   - no two entries share a name, and the entries' byte ranges cover the
 *     data exactly: no overlaps, no holes, no trailing bytes.
 * Only then are the layer's tensors looked up and read. */
#include "safetensors.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Integers a JSON number (a double in cJSON) represents exactly. */
#define MAX_JSON_INT 9007199254740992.0 /* 2^53 */

typedef struct entry {
    const char *name;
    const char *dtype;    /* NULL for __metadata__ */
    const cJSON *shape;
    uint64_t begin, end;  /* relative to the data */
} entry;

static size_t dtype_size(const char *dtype)
{
    static const struct {
        const char *name;
        size_t size;
    } table[] = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
        {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},
        {"U32", 4},  {"F32", 4}, {"I64", 8},  {"U64", 8},     {"F64", 8},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; ++i)
        if (strcmp(dtype, table[i].name) == 0)
            return table[i].size;
    return 0; /* a dtype this reader does not know: its size is not checked */
}

static int json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    const double d = item->valuedouble;
    if (!isfinite(d) || d < 0.0 || d > MAX_JSON_INT || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static uint64_t get_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* One entry of the header object: a tensor's info, or the metadata. */
static clbn_status parse_entry(const cJSON *item, uint64_t data_len, entry *e)
{
    e->name = item->string;
    if (!e->name)
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    if (strcmp(e->name, "__metadata__") == 0) {
        if (!cJSON_IsObject(item))
            return CLBN_ERROR_SAFETENSORS_FORMAT;
        for (const cJSON *m = item->child; m; m = m->next)
            if (!cJSON_IsString(m))
                return CLBN_ERROR_SAFETENSORS_FORMAT;
        e->dtype = NULL;
        return CLBN_SUCCESS;
    }
    if (!cJSON_IsObject(item))
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !dtype->valuestring || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    e->dtype = dtype->valuestring;
    e->shape = shape;
    if (!json_uint(offsets->child, &e->begin) || !json_uint(offsets->child->next, &e->end) ||
        e->begin > e->end || e->end > data_len)
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    /* The element count, without overflow: it must match the byte range. */
    uint64_t count = 1;
    int zero = 0, overflow = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        uint64_t dim;
        if (!json_uint(d, &dim))
            return CLBN_ERROR_SAFETENSORS_FORMAT;
        if (dim == 0)
            zero = 1;
        else if (count > UINT64_MAX / dim)
            overflow = 1;
        else
            count *= dim;
    }
    if (zero)
        count = 0, overflow = 0;
    const size_t size = dtype_size(e->dtype);
    if (size != 0 && (overflow || count > UINT64_MAX / size || count * size != e->end - e->begin))
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    return CLBN_SUCCESS;
}

/* Whether h[0..n) is UTF-8 as RFC 3629 defines it: no stray continuation
 * byte, no truncated sequence, no overlong encoding, no encoded surrogate
 * (U+D800..U+DFFF), nothing above U+10FFFF. */
static int utf8_ok(const unsigned char *h, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const unsigned char b = h[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            ++i;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; ++k) {
            if ((h[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (h[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
        const char c = p[k];
        const int d = c >= '0' && c <= '9' ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 1;
}

/* The \u escapes of h[0..n): none is U+0000, and every surrogate escape is
 * a high one followed by a low one (what JSON parsers that check Unicode,
 * serde_json's among them, accept). */
static int escapes_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        if (h[i] != '\\')
            continue;
        if (i + 1 >= n)
            return 0;
        if (h[i + 1] != 'u') {
            ++i; /* \\, \", \n, ...: the next character is not an escape's start */
            continue;
        }
        uint32_t u, lo;
        if (i + 6 > n || !hex4(h + i + 2, &u) || u == 0)
            return 0;
        i += 5;
        if (u >= 0xdc00 && u <= 0xdfff)
            return 0; /* a low surrogate alone */
        if (u >= 0xd800 && u <= 0xdbff) {
            if (i + 7 > n || h[i + 1] != '\\' || h[i + 2] != 'u' || !hex4(h + i + 3, &lo) ||
                lo < 0xdc00 || lo > 0xdfff)
                return 0; /* a high surrogate without its low one */
            i += 6;
        }
    }
    return 1;
}

/* The header's bytes: UTF-8 (the format requires UTF-8 JSON), no NUL, no
 * \u0000 escape and no unpaired surrogate escape, a JSON object first. */
static int header_bytes_ok(const char *h, size_t n)
{
    if (n < 2 || h[0] != '{' || memchr(h, '\0', n) || !utf8_ok((const unsigned char *)h, n) ||
        !escapes_ok(h, n))
        return 0;
    for (size_t i = 0; i + 6 <= n; ++i)
        if (h[i] == '\\' && (h[i + 1] == 'u' || h[i + 1] == 'U') && h[i + 2] == '0' &&
            h[i + 3] == '0' && h[i + 4] == '0' && h[i + 5] == '0')
            return 0;
    return 1;
}

static const entry *find(const entry *sorted, size_t count, const char *name)
{
    entry key;
    key.name = name;
    return bsearch(&key, sorted, count, sizeof *sorted, by_name);
}

/* Is `e` a vector of num_features values of the layer's type? */
static int is_vector(const entry *e, const clbn_st_layer *layer)
{
    uint64_t dim;
    const char *want = layer->width == 8 ? "F64" : "F32";
    return strcmp(e->dtype, want) == 0 && cJSON_GetArraySize(e->shape) == 1 &&
           json_uint(e->shape->child, &dim) && dim == layer->num_features;
}

static void from_le(unsigned char *p, size_t count, size_t width)
{
    for (size_t i = 0; i < count; ++i, p += width) {
        uint64_t v = 0;
        for (size_t k = 0; k < width; ++k)
            v |= (uint64_t)p[k] << (8 * k);
        if (width == 8) {
            memcpy(p, &v, 8);
        } else {
            uint32_t w = (uint32_t)v;
            memcpy(p, &w, 4);
        }
    }
}

clbn_status clbn__safetensors_read_bn(const clbn_st_reader *reader, const char *prefix,
                                      const clbn_st_layer *layer, void *values,
                                      uint64_t *num_batches_tracked)
{
    if (!prefix)
        prefix = "";
    unsigned char len8[8];
    if (reader->size < 8)
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    if (reader->read(reader->user, 0, len8, 8) != 0)
        return CLBN_ERROR_FILE_IO;
    const uint64_t header_len = get_u64le(len8);
    if (header_len > CLBN_ST_MAX_HEADER || header_len > reader->size - 8)
        return CLBN_ERROR_SAFETENSORS_FORMAT;
    const uint64_t data_start = 8 + header_len, data_len = reader->size - data_start;

    char *header = malloc((size_t)header_len + 1);
    if (!header)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (reader->read(reader->user, 8, header, (size_t)header_len) != 0) {
        free(header);
        return CLBN_ERROR_FILE_IO;
    }
    header[header_len] = '\0';

    clbn_status st = CLBN_SUCCESS;
    cJSON *root = NULL;
    entry *entries = NULL;
    char *name = NULL;
    const char *end = NULL;
    if (!header_bytes_ok(header, (size_t)header_len)) {
        st = CLBN_ERROR_SAFETENSORS_FORMAT;
        goto out;
    }
    root = cJSON_ParseWithLengthOpts(header, (size_t)header_len, &end, 0);
    if (!root || !cJSON_IsObject(root) || !end || end < header || end > header + header_len) {
        st = CLBN_ERROR_SAFETENSORS_FORMAT;
        goto out;
    }
    for (const char *p = end; p < header + header_len; ++p)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = CLBN_ERROR_SAFETENSORS_FORMAT; /* something after the object */
            goto out;
        }

    size_t count = 0;
    for (const cJSON *item = root->child; item; item = item->next)
        ++count;
    entries = malloc((count ? count : 1) * sizeof *entries);
    if (!entries) {
        st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
        goto out;
    }
    size_t i = 0;
    for (const cJSON *item = root->child; item; item = item->next, ++i)
        if ((st = parse_entry(item, data_len, &entries[i])) != CLBN_SUCCESS)
            goto out;
    qsort(entries, count, sizeof *entries, by_name);
    for (i = 1; i < count; ++i)
        if (strcmp(entries[i - 1].name, entries[i].name) == 0) {
            st = CLBN_ERROR_SAFETENSORS_FORMAT; /* a name twice */
            goto out;
        }

    /* The layer's tensors, looked up before the entries are re-sorted. */
    static const char *const vector_names[4] = {"weight", "bias", "running_mean", "running_var"};
    const size_t plen = strlen(prefix);
    name = malloc(plen + sizeof "num_batches_tracked");
    if (!name) {
        st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
        goto out;
    }
    memcpy(name, prefix, plen);
    entry wanted[5];
    int nwanted = 0;
    const entry *nbt = NULL;
    for (int t = 0; t < 5; ++t) {
        const int have = t < 2 ? layer->affine : layer->track_running_stats;
        strcpy(name + plen, t < 4 ? vector_names[t] : "num_batches_tracked");
        const entry *e = find(entries, count, name);
        if (e && !e->dtype)
            e = NULL; /* the prefix made "__metadata__" */
        if (!have) {
            if (e) {
                st = CLBN_ERROR_STATE_MISMATCH; /* e.g. weights for an affine = 0 layer */
                goto out;
            }
            continue;
        }
        if (!e) {
            st = CLBN_ERROR_TENSOR_NOT_FOUND;
            goto out;
        }
        if (t < 4 ? !is_vector(e, layer)
                  : strcmp(e->dtype, "I64") != 0 || cJSON_GetArraySize(e->shape) != 0) {
            st = CLBN_ERROR_STATE_MISMATCH;
            goto out;
        }
        if (t < 4)
            wanted[nwanted++] = *e;
        else
            nbt = e;
    }
    entry nbt_entry;
    if (nbt)
        nbt_entry = *nbt;
    /* the optional skip counters */
    const entry *sk = NULL;
    entry sk_entry;
    if (layer->skipped_updates) {
        uint64_t dim;
        strcpy(name + plen, "skipped_updates");
        sk = find(entries, count, name);
        if (sk && !sk->dtype)
            sk = NULL;
        if (sk && (strcmp(sk->dtype, "I64") != 0 || cJSON_GetArraySize(sk->shape) != 1 ||
                   !json_uint(sk->shape->child, &dim) || dim != layer->num_features)) {
            st = CLBN_ERROR_STATE_MISMATCH;
            goto out;
        }
        if (sk)
            sk_entry = *sk;
    }

    /* The byte ranges cover the data exactly. */
    size_t tensors = 0;
    for (i = 0; i < count; ++i)
        if (entries[i].dtype)
            entries[tensors++] = entries[i];
    qsort(entries, tensors, sizeof *entries, by_offset);
    uint64_t pos = 0;
    for (i = 0; i < tensors; ++i) {
        if (entries[i].begin != pos) {
            st = CLBN_ERROR_SAFETENSORS_FORMAT; /* a hole or an overlap */
            goto out;
        }
        pos = entries[i].end;
    }
    if (pos != data_len) {
        st = CLBN_ERROR_SAFETENSORS_FORMAT; /* bytes no tensor owns */
        goto out;
    }

    /* Everything checked: read. */
    const size_t vbytes = layer->num_features * layer->width;
    for (int t = 0; t < nwanted; ++t) {
        unsigned char *dst = (unsigned char *)values + (size_t)t * vbytes;
        if (reader->read(reader->user, data_start + wanted[t].begin, dst, vbytes) != 0) {
            st = CLBN_ERROR_FILE_IO;
            goto out;
        }
        from_le(dst, layer->num_features, layer->width);
    }
    *num_batches_tracked = 0;
    if (nbt) {
        unsigned char b[8];
        if (reader->read(reader->user, data_start + nbt_entry.begin, b, 8) != 0) {
            st = CLBN_ERROR_FILE_IO;
            goto out;
        }
        const uint64_t v = get_u64le(b);
        if (v > (uint64_t)INT64_MAX) {
            st = CLBN_ERROR_SAFETENSORS_FORMAT; /* a negative count */
            goto out;
        }
        *num_batches_tracked = v;
    }
    if (sk) {
        /* checked whole before any counter changes */
        const size_t n = layer->num_features;
        unsigned char *b = malloc(8 * n);
        if (!b) {
            st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
            goto out;
        }
        if (reader->read(reader->user, data_start + sk_entry.begin, b, 8 * n) != 0)
            st = CLBN_ERROR_FILE_IO;
        for (size_t k = 0; k < n && st == CLBN_SUCCESS; ++k)
            if (get_u64le(b + 8 * k) > UINT32_MAX)
                st = CLBN_ERROR_SAFETENSORS_FORMAT; /* negative or beyond a cl_uint */
        for (size_t k = 0; k < n && st == CLBN_SUCCESS; ++k)
            layer->skipped_updates[k] = (uint32_t)get_u64le(b + 8 * k);
        free(b);
    }
out:
    free(name);
    free(entries);
    cJSON_Delete(root);
    free(header);
    return st;
}
