/*
 * Runs a libFuzzer target's LLVMFuzzerTestOneInput over files and folders
 * (each file once), without libFuzzer: the committed corpora become
 * regression tests of the ordinary build (CTest: fuzz_*_corpus), with any
 * compiler. Exit status 77 (skipped) when there is no OpenCL device.
 *
 *   replay_<target> FILE_OR_DIR...
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long g_inputs;

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        exit(1);
    }
    unsigned char *data = NULL;
    size_t size = 0, cap = 0, n;
    unsigned char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (size + n > cap) {
            cap = 2 * (size + n);
            data = realloc(data, cap);
            if (!data)
                exit(1);
        }
        memcpy(data + size, chunk, n);
        size += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data ? data : chunk, size);
    free(data);
    ++g_inputs;
}

static void run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: no such file or folder: %s\n", path);
        exit(1);
    }
    if (!S_ISDIR(sb.st_mode)) {
        run_file(path);
        return;
    }
    DIR *dir = opendir(path);
    if (!dir)
        exit(1);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        run_path(child);
    }
    closedir(dir);
}

int main(int argc, char **argv)
{
    clbn_context *probe = NULL;
    clbn_status st = clbn_context_create_default(&probe);
    if (st == CLBN_ERROR_NO_DEVICE) {
        printf("no OpenCL device: skipping\n");
        return 77;
    }
    clbn_context_release(probe);
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; ++i)
        run_path(argv[i]);
    printf("replayed %ld inputs without a failure\n", g_inputs);
    return 0;
}
