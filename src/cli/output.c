/* Where the commands write (see output.h): locked folders, per-input
 * staging and publication, and the stop flag set by SIGINT/SIGTERM. */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SIGINT / SIGTERM ---- */

static volatile sig_atomic_t stop_signal;

/* Only records the signal: the main path notices it between steps,
 * removes what is incomplete and then dies of the same signal. */
static void on_stop(int sig)
{
    stop_signal = sig;
}

void stop_handlers_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int stop_requested(void)
{
    return stop_signal;
}

void stop_reraise(void)
{
    int sig = stop_signal;
    if (!sig)
        return;
    fflush(stdout);
    signal(sig, SIG_DFL);
    raise(sig);
    /* Not reached for SIGINT/SIGTERM/SIGHUP; the shell's convention otherwise. */
    _exit(128 + sig);
}

/* ---- folders ---- */

bool out_same_dir(const char *p, const char *q)
{
    struct stat a, b;
    if (stat(p, &a) != 0 || stat(q, &b) != 0)
        return strcmp(p, q) == 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int ensure_dir_made(const char *dir, bool *made)
{
    struct stat st;
    *made = false;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : failf("%s: exists and is not a directory%s", dir, "");
    if (mkdir(dir, 0777) != 0)
        return failf("%s: cannot create directory: %s", dir, strerror(errno));
    *made = true;
    return 0;
}

int out_dir_open(out_dir *d, const char *path)
{
    memset(d, 0, sizeof *d);
    d->lock_fd = -1;
    int rc = ensure_dir_made(path, &d->created);
    if (rc)
        return rc;
    if (!(d->path = strdup(path))) {
        out_dir_close(d);
        return fail("out of memory");
    }
    /* An advisory lock on the folder itself: a second relprop writing
     * there would pass the same overwrite checks and mix its files in. */
    d->lock_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->lock_fd < 0) {
        rc = failf("%s: cannot open the output folder: %s", path, strerror(errno));
        out_dir_close(d);
        return rc;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK
                 ? failf("%s: another relprop process is writing into this folder; wait for it to finish or "
                         "choose another folder%s", path, "")
                 : failf("%s: cannot lock the output folder: %s", path, strerror(errno));
        out_dir_close(d);
        return rc;
    }
    size_t len = strlen(path) + 32;
    if (!(d->staging = malloc(len))) {
        out_dir_close(d);
        return fail("out of memory");
    }
    snprintf(d->staging, len, "%s/.relprop-staging-XXXXXX", path);
    if (!mkdtemp(d->staging)) {
        rc = failf("%s: cannot write there: %s", path, strerror(errno));
        free(d->staging);
        d->staging = NULL;
        out_dir_close(d);
        return rc;
    }
    long name_max = pathconf(path, _PC_NAME_MAX);
    d->name_max = name_max > 0 ? name_max : 255;
    return 0;
}

void out_dir_close(out_dir *d)
{
    if (d->staging) {
        rmdir(d->staging); /* empty unless a writer was killed outright */
        free(d->staging);
    }
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    /* A folder this run made and left empty goes again: a failed run
     * leaves nothing behind. */
    if (d->created && d->path)
        rmdir(d->path);
    free(d->path);
    memset(d, 0, sizeof *d);
    d->lock_fd = -1;
}

/* ---- one input's files ---- */

int txn_add(out_txn *t, out_dir *d, const char *name, char *staged, size_t len)
{
    if (!d || !d->staging)
        return fail("internal error: no output folder");
    if ((long)strlen(name) > d->name_max) {
        char msg[8400];
        snprintf(msg, sizeof msg, "%s/%s: a file name of %zu bytes, longer than the %ld the file system takes",
                 d->path, name, strlen(name), d->name_max);
        return fail(msg);
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        out_file *grown = realloc(t->files, sizeof *grown * (size_t)cap);
        if (!grown)
            return fail("out of memory");
        t->files = grown;
        t->cap = cap;
    }
    out_file *f = &t->files[t->n];
    memset(f, 0, sizeof *f);
    f->dir = d;
    if (!(f->name = strdup(name)))
        return fail("out of memory");
    t->n++;
    int n = snprintf(staged, len, "%s/%s", d->staging, name);
    if (n < 0 || (size_t)n >= len)
        return failf("%s/%s: path too long", d->path, name);
    return 0;
}

void txn_final_path(const out_file *f, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", f->dir->path, f->name);
}

int txn_check_overwrite(const out_txn *t, bool force)
{
    char path[PATH_MAX + 256];
    for (int i = 0; i < t->n; i++) {
        txn_final_path(&t->files[i], path, sizeof path);
        int rc = refuse_overwrite(path, force);
        if (rc)
            return rc;
    }
    return 0;
}

int txn_publish(out_txn *t)
{
    char from[PATH_MAX + 256], to[PATH_MAX + 256];
    rp_error err = {0};
    for (int i = 0; i < t->n; i++) {
        out_file *f = &t->files[i];
        snprintf(from, sizeof from, "%s/%s", f->dir->staging, f->name);
        txn_final_path(f, to, sizeof to);
        if (rp_file_rename_regular(from, to, &err)) {
            int rc = fail(err.msg);
            txn_rollback(t);
            return rc;
        }
        f->published = true;
    }
    return 0;
}

void txn_rollback(out_txn *t)
{
    char path[PATH_MAX + 256];
    for (int i = 0; i < t->n; i++) {
        out_file *f = &t->files[i];
        if (f->published)
            txn_final_path(f, path, sizeof path);
        else
            snprintf(path, sizeof path, "%s/%s", f->dir->staging, f->name);
        unlink(path); /* absent when the failure came before it was written */
        f->published = false;
    }
}

void txn_free(out_txn *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->files[i].name);
    free(t->files);
    memset(t, 0, sizeof *t);
}
