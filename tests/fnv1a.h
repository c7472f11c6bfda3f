/* FNV-1a, 32-bit: the tuning database's line checksum (docs/tuning.md),
 * written here from the published definition for the tests that forge
 * entries (check_tuning.c, check_shipped.c). */
#ifndef CLBN_TESTS_FNV1A_H
#define CLBN_TESTS_FNV1A_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; ++i) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

#endif
