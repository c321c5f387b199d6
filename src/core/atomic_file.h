/* Files written whole or not at all, and files read within bounds. The
 * public one-call forms (rp_file_write_atomic, rp_file_rename_regular,
 * rp_file_read_text, rp_file_open_regular) are in relprop/relprop.h;
 * this is the streaming writer behind them, for encoders that produce
 * their bytes in pieces (.npy, PNG).
 *
 *     rp_atomic_file af;
 *     if (rp_atomic_begin(&af, path, err)) return ...;      // temporary beside path
 *     if (rp_atomic_write(&af, bytes, n, err)) { rp_atomic_abort(&af); return ...; }
 *     return rp_atomic_commit(&af, err);                     // fsync, rename; aborts itself on error
 */
#ifndef RP_CORE_ATOMIC_FILE_H
#define RP_CORE_ATOMIC_FILE_H

#include <stddef.h>

#include "relprop/relprop.h"

typedef struct rp_atomic_file {
    int fd;     /* the temporary, open for writing; -1 when none */
    char *path; /* the final name */
    char *tmp;  /* the temporary's name, in path's folder */
} rp_atomic_file;

/* Creates a new temporary file in path's folder (a random name, O_CREAT |
 * O_EXCL | O_NOFOLLOW, so nothing planted there is followed or reused).
 * Fails without creating anything when path names something other than a
 * regular file (a symlink, device, FIFO, socket or directory). */
rp_status rp_atomic_begin(rp_atomic_file *af, const char *path, rp_error *err);
/* Appends n bytes (short writes and EINTR handled). On error the file stays
 * open: the caller aborts. */
rp_status rp_atomic_write(rp_atomic_file *af, const void *data, size_t n, rp_error *err);
/* fsync, close, and rename over path (again only if path is absent or a
 * regular file). On any failure the temporary is removed and path is
 * untouched. af is released either way. */
rp_status rp_atomic_commit(rp_atomic_file *af, rp_error *err);
/* Removes the temporary and releases af. Safe on a released af. */
void rp_atomic_abort(rp_atomic_file *af);

/* A whole regular file of at most max_bytes, opened as rp_file_open_regular
 * does, in *out (malloc'd, NUL after the last byte; the caller frees it).
 * rp_file_read_text is this plus a refusal of NUL bytes. */
rp_status rp_file_read_all(const char *path, const char *what, int64_t max_bytes, char **out, size_t *len,
                           rp_error *err);

#endif
