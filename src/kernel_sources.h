/* The OpenCL C sources of cl/, embedded by cmake/embed_cl.cmake. */
#ifndef CLBN_KERNEL_SOURCES_H
#define CLBN_KERNEL_SOURCES_H

/* In build order: cl/common.cl first. */
extern const char *const clbn_kernel_sources[];
extern const char *const clbn_kernel_source_names[];
extern const unsigned clbn_kernel_source_count;
/* SHA-256 of all sources together, for cache keys. */
extern const char clbn_kernel_sources_sha256[];

#endif
