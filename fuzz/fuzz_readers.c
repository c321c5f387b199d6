/* libFuzzer target: the readers of user files that are not models.
 *
 * The first byte picks the reader, the rest is the file:
 *   0: .npy from memory (rp_npy_read_buffer, the core of rp_npy_read)
 *   1: an image (rp_image_load, through a memfd so the real file path is used)
 *   2: a serialized TensorProto (rp_tensor_load_pb, through a memfd)
 *   3: .npy through rp_npy_read on a memfd (the file path, sized by fstat)
 * fuzz/run.sh prepends the selector to each seed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/npy.h"
#include "core/tensor.h"
#include "graph/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An in-memory file holding buf; its fd, and a path naming it in path. */
static int mem_file(const uint8_t *buf, size_t len, char *path, size_t cap)
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, buf + off, len - off);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)k;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* A tensor handed back must be consistent: check its shape, touch every byte. */
static void check_tensor(const rp_tensor *t)
{
    if (t->rank < 0 || t->rank > RP_MAX_RANK || rp_shape_count(t->rank, t->dims) != t->count)
        abort();
    size_t n = (size_t)t->count * rp_dtype_size(t->dtype);
    if (n && !t->data)
        abort();
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc ^= ((const uint8_t *)t->data)[i];
    (void)acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] & 3;
    data++;
    size--;
    rp_error err;
    memset(&err, 0, sizeof err);
    char path[64];
    int fd;
    rp_tensor t;
    switch (which) {
    case 0:
        if (rp_npy_read_buffer(data, size, "fuzz.npy", &t, &err) == RP_OK) {
            check_tensor(&t);
            rp_tensor_release(&t);
        }
        break;
    case 1: {
        if ((fd = mem_file(data, size, path, sizeof path)) < 0)
            return 0;
        rp_image im;
        if (rp_image_load(path, &im, &err) == RP_OK) {
            if (im.width <= 0 || im.height <= 0 || im.channels != 3 || !im.pixels)
                abort();
            volatile uint8_t acc = 0;
            size_t n = (size_t)im.width * (size_t)im.height * 3;
            for (size_t i = 0; i < n; i += 61)
                acc ^= im.pixels[i];
            acc ^= im.pixels[n - 1];
            (void)acc;
            rp_image_release(&im);
        }
        close(fd);
        break;
    }
    case 2: {
        if ((fd = mem_file(data, size, path, sizeof path)) < 0)
            return 0;
        char *name = NULL;
        if (rp_tensor_load_pb(path, &t, &name, &err) == RP_OK) {
            check_tensor(&t);
            rp_tensor_release(&t);
            free(name);
        }
        close(fd);
        break;
    }
    case 3:
        if ((fd = mem_file(data, size, path, sizeof path)) < 0)
            return 0;
        if (rp_npy_read(path, &t, &err) == RP_OK) {
            check_tensor(&t);
            rp_tensor_release(&t);
        }
        close(fd);
        break;
    }
    return 0;
}
