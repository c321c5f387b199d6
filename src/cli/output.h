/* Where the commands write. An output folder is created if missing, locked
 * (flock) against a second relprop process for the whole run, and holds a
 * staging folder, DIR/.relprop-staging-XXXXXX. One input's files are
 * written there under their final names (each whole, through relprop's
 * atomic writer), and only when all of them exist are they renamed into
 * DIR, the JSON summary last: it is the commit record. A failure or a stop
 * (SIGINT, SIGTERM, SIGHUP) before that removes the staged files; a failure
 * while renaming removes the ones already renamed. So every input leaves
 * either its complete set of results or nothing, and no temporaries. */
#ifndef RP_CLI_OUTPUT_H
#define RP_CLI_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

/* Handlers that only record SIGINT/SIGTERM/SIGHUP; stop_requested() gives
 * the signal (0 if none). After cleaning up, stop_reraise() dies of that
 * signal with the default action (exit status 128 + signal in a shell). */
void stop_handlers_install(void);
int stop_requested(void);
void stop_reraise(void);

typedef struct out_dir {
    char *path;
    char *staging;  /* DIR/.relprop-staging-XXXXXX */
    int lock_fd;    /* the folder, flock'ed */
    bool created;   /* made by this run: removed at close if left empty */
    long name_max;  /* the file system's longest file name */
} out_dir;

/* Two paths naming one folder (one lock, one staging folder). */
bool out_same_dir(const char *p, const char *q);

/* Creates path if missing, locks it (a second process gets a one-line
 * error), and makes its staging folder. EXIT_BAD after printing. */
int out_dir_open(out_dir *d, const char *path);
/* Removes the staging folder, unlocks, and removes path again if this run
 * made it and nothing was published. Safe on a zeroed or closed d. */
void out_dir_close(out_dir *d);

typedef struct out_file {
    out_dir *dir;
    char *name;
    bool published;
} out_file;

/* One input's files, in the order they are published (add the JSON last). */
typedef struct out_txn {
    out_file *files;
    int n, cap;
} out_txn;

/* Registers file `name` of folder d and gives the staged path to write it
 * to. Refuses names longer than the file system takes. */
int txn_add(out_txn *t, out_dir *d, const char *name, char *staged, size_t len);
/* "DIR/name" of a registered file. */
void txn_final_path(const out_file *f, char *path, size_t len);
/* refuse_overwrite for every registered file. */
int txn_check_overwrite(const out_txn *t, bool force);
/* Renames every staged file into its folder, in order; on failure removes
 * what it renamed and what is still staged. */
int txn_publish(out_txn *t);
/* Removes every registered file, staged or published. */
void txn_rollback(out_txn *t);
void txn_free(out_txn *t);

#endif
