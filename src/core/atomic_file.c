/* Files written whole or not at all, and files read within bounds (see
 * core/atomic_file.h and relprop.h, "files").
 *
 * Writing: a temporary with a random name is created in the target's folder
 * with O_CREAT | O_EXCL | O_NOFOLLOW, so a symlink or file planted under any
 * name is neither followed nor reused; the data is fsync'd before the
 * rename, so a crash leaves the old file or the new one, never an empty
 * one. rename() replaces whatever stands at the name, so the target is
 * checked with lstat first, at the start and again just before the rename:
 * only an absent name or a regular file is replaced. A device, FIFO, socket,
 * symlink or directory there is refused (as root, `-o /dev/null --force`
 * must not turn /dev/null into a regular file; writing into the device
 * instead would make "whole or absent" meaningless).
 *
 * Reading: inputs are opened with O_NONBLOCK (opening a FIFO with no writer
 * would otherwise block forever) and fstat'd before anything is read; only
 * regular files pass, and their size is checked against the caller's bound
 * before a byte is read. */
#define _DEFAULT_SOURCE /* getrandom */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISLNK(m))
        return "a symbolic link";
    if (S_ISFIFO(m))
        return "a FIFO (named pipe)";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

/* RP_OK when nothing or a regular file stands at path (not following a
 * final symlink). */
static rp_status check_replaceable(const char *path, rp_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return RP_OK;
        return rp_fail(err, RP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return rp_fail(err, RP_ERR_IO, "%s: is %s; relprop only creates or replaces regular files", path,
                       kind_of(sb.st_mode));
    return RP_OK;
}

static uint64_t random_bits(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* No entropy yet: O_EXCL keeps the name safe anyway; only
         * uniqueness between tries matters. */
        static unsigned counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32 ^ ++counter;
    }
    return r;
}

rp_status rp_atomic_begin(rp_atomic_file *af, const char *path, rp_error *err)
{
    af->fd = -1;
    af->path = af->tmp = NULL;
    if (!path || !path[0])
        return rp_fail(err, RP_ERR_ARG, "no output file name given");
    rp_status st = check_replaceable(path, err);
    if (st)
        return st;
    /* The temporary's name is short and independent of the final name, so
     * a final name near the file system's limit fails at the rename with
     * the temporary removed, not at a longer temporary name. */
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t cap = dir_len + 32;
    af->path = strdup(path);
    af->tmp = malloc(cap);
    if (!af->path || !af->tmp) {
        rp_atomic_abort(af);
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int attempt = 0; attempt < 64; attempt++) {
        snprintf(af->tmp, cap, "%.*s.rp-tmp-%016llx", (int)dir_len, path, (unsigned long long)random_bits());
        /* 0666 less the umask, as fopen would have made it. */
        af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (af->fd >= 0)
            return RP_OK;
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(af->tmp); /* nothing was created: no unlink */
    af->tmp = NULL;
    rp_atomic_abort(af);
    return rp_fail(err, RP_ERR_IO, "%s: cannot create a file in its folder: %s", path, strerror(e));
}

rp_status rp_atomic_write(rp_atomic_file *af, const void *data, size_t n, rp_error *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(af->fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return rp_fail(err, RP_ERR_IO, "%s: write error: %s", af->path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return RP_OK;
}

void rp_atomic_abort(rp_atomic_file *af)
{
    if (af->fd >= 0)
        close(af->fd);
    if (af->tmp)
        unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    af->fd = -1;
    af->tmp = af->path = NULL;
}

rp_status rp_atomic_commit(rp_atomic_file *af, rp_error *err)
{
    rp_status st = RP_OK;
    if (fsync(af->fd) != 0 && errno != EINVAL && errno != EROFS)
        st = rp_fail(err, RP_ERR_IO, "%s: write error: %s", af->path, strerror(errno));
    int fd = af->fd;
    af->fd = -1;
    if (close(fd) != 0 && !st)
        st = rp_fail(err, RP_ERR_IO, "%s: write error: %s", af->path, strerror(errno));
    if (!st)
        st = check_replaceable(af->path, err);
    if (!st && rename(af->tmp, af->path) != 0)
        st = rp_fail(err, RP_ERR_IO, "%s: cannot write: %s", af->path, strerror(errno));
    if (!st) {
        free(af->tmp); /* renamed: nothing to remove */
        af->tmp = NULL;
    }
    rp_atomic_abort(af);
    return st;
}

rp_status rp_file_write_atomic(const char *path, const void *data, size_t len, rp_error *err)
{
    rp_atomic_file af;
    rp_status st = rp_atomic_begin(&af, path, err);
    if (st)
        return st;
    if ((st = rp_atomic_write(&af, data, len, err))) {
        rp_atomic_abort(&af);
        return st;
    }
    return rp_atomic_commit(&af, err);
}

rp_status rp_file_rename_regular(const char *from, const char *to, rp_error *err)
{
    struct stat sb;
    if (lstat(from, &sb) != 0)
        return rp_fail(err, RP_ERR_IO, "%s: %s", from, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return rp_fail(err, RP_ERR_IO, "%s: is %s, expected a file relprop wrote", from, kind_of(sb.st_mode));
    rp_status st = check_replaceable(to, err);
    if (st)
        return st;
    if (rename(from, to) != 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot write: %s", to, strerror(errno));
    return RP_OK;
}

rp_status rp_file_open_regular(const char *path, const char *what, int64_t max_bytes, int *fd_out, int64_t *size,
                               rp_error *err)
{
    *fd_out = -1;
    if (!what)
        what = "file";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot open %s: %s", path, what, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return rp_fail(err, RP_ERR_IO, "%s: cannot read %s: %s", path, what, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return rp_fail(err, RP_ERR_IO, "%s: the %s is %s; relprop reads regular files only", path, what,
                       kind_of(sb.st_mode));
    }
    if (max_bytes > 0 && sb.st_size > max_bytes) {
        close(fd);
        return rp_fail(err, RP_ERR_VALUE, "%s: the %s has %lld bytes, more than the %lld a %s may have", path, what,
                       (long long)sb.st_size, (long long)max_bytes, what);
    }
    /* Regular files never block; reads should not see EAGAIN either way. */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *fd_out = fd;
    if (size)
        *size = (int64_t)sb.st_size;
    return RP_OK;
}

rp_status rp_file_read_all(const char *path, const char *what, int64_t max_bytes, char **out, size_t *len,
                           rp_error *err)
{
    *out = NULL;
    *len = 0;
    int fd;
    int64_t size;
    rp_status st = rp_file_open_regular(path, what, max_bytes, &fd, &size, err);
    if (st)
        return st;
    /* The file may grow between fstat and read: read at most the size seen
     * plus one byte, and refuse if that byte arrives. */
    size_t cap = (size_t)size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory reading %lld bytes", path, (long long)size);
    }
    while (n < cap) {
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            st = rp_fail(err, RP_ERR_IO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (!st && n > (size_t)size)
        st = rp_fail(err, RP_ERR_IO, "%s: the %s grew while it was read", path, what ? what : "file");
    if (st) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return RP_OK;
}

rp_status rp_file_read_text(const char *path, const char *what, int64_t max_bytes, char **out, size_t *len,
                            rp_error *err)
{
    rp_status st = rp_file_read_all(path, what, max_bytes, out, len, err);
    if (!st && memchr(*out, 0, *len)) {
        free(*out);
        *out = NULL;
        *len = 0;
        st = rp_fail(err, RP_ERR_FORMAT, "%s: the %s contains NUL bytes; expected text", path, what ? what : "file");
    }
    return st;
}
