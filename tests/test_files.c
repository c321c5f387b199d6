/* The whole-or-absent writer and the bounded reader (src/core/atomic_file.c,
 * relprop.h "files"): what they replace, what they refuse, what they leave
 * behind, and that nothing they open can block. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relprop/relprop.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/relprop_files_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *at(const char *name)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

/* The folder's entries, sorted, space-separated: temporaries would show. */
static const char *listing(void)
{
    static char out[1024];
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    ck_assert_int_ge(n, 0);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
            strncat(out, names[i]->d_name, sizeof out - strlen(out) - 2);
            strcat(out, " ");
        }
        free(names[i]);
    }
    free(names);
    return out;
}

static char *slurp(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

START_TEST(writes_and_replaces_regular_files)
{
    rp_error err = {0};
    ck_assert_int_eq(rp_file_write_atomic(at("a.txt"), "one", 3, &err), RP_OK);
    ck_assert_str_eq(slurp(at("a.txt")), "one");
    ck_assert_int_eq(rp_file_write_atomic(at("a.txt"), "two!", 4, &err), RP_OK);
    ck_assert_str_eq(slurp(at("a.txt")), "two!");
    ck_assert_str_eq(listing(), "a.txt ");
    /* The mode fopen would give: 0666 less the umask. */
    mode_t mask = umask(022);
    umask(mask);
    struct stat sb;
    ck_assert_int_eq(stat(at("a.txt"), &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0666 & ~mask);
    /* An empty file is a file. */
    ck_assert_int_eq(rp_file_write_atomic(at("empty"), "", 0, &err), RP_OK);
    ck_assert_int_eq(stat(at("empty"), &sb), 0);
    ck_assert_int_eq(sb.st_size, 0);
}
END_TEST

START_TEST(refuses_what_is_not_a_regular_file)
{
    rp_error err = {0};
    FILE *f = fopen(at("victim"), "w");
    fputs("keep", f);
    fclose(f);
    ck_assert_int_eq(symlink(at("victim"), at("link")), 0);
    ck_assert_int_eq(rp_file_write_atomic(at("link"), "evil", 4, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "symbolic link") != NULL, "%s", err.msg);
    ck_assert_str_eq(slurp(at("victim")), "keep");
    struct stat sb;
    ck_assert_int_eq(lstat(at("link"), &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));

    ck_assert_int_eq(mkfifo(at("fifo"), 0600), 0);
    ck_assert_int_eq(rp_file_write_atomic(at("fifo"), "x", 1, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "FIFO") != NULL, "%s", err.msg);
    ck_assert_int_eq(mkdir(at("sub"), 0755), 0);
    ck_assert_int_eq(rp_file_write_atomic(at("sub"), "x", 1, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "directory") != NULL, "%s", err.msg);
    ck_assert_int_eq(rp_file_write_atomic(at("nowhere/x"), "x", 1, &err), RP_ERR_IO);

    /* .npy writes follow the same rules. */
    float v[2] = {1, 2};
    rp_tensor t = {.dtype = RP_FLOAT, .rank = 1, .dims = {2}, .count = 2, .data = v};
    ck_assert_int_eq(rp_npy_write(at("link"), &t, &err), RP_ERR_IO);
    ck_assert_str_eq(slurp(at("victim")), "keep");

    /* rename only onto nothing or a regular file */
    ck_assert_int_eq(rp_file_write_atomic(at("staged"), "new", 3, &err), RP_OK);
    ck_assert_int_eq(rp_file_rename_regular(at("staged"), at("link"), &err), RP_ERR_IO);
    ck_assert_int_eq(rp_file_rename_regular(at("staged"), at("victim2"), &err), RP_OK);
    ck_assert_str_eq(slurp(at("victim2")), "new");
    /* nothing else was created: no temporaries */
    ck_assert_str_eq(listing(), "fifo link sub victim victim2 ");
}
END_TEST

START_TEST(reads_within_bounds_without_blocking)
{
    rp_error err = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(at("list.txt"), "w");
    fputs("a\nb\n", f);
    fclose(f);
    ck_assert_int_eq(rp_file_read_text(at("list.txt"), "list", 100, &text, &len, &err), RP_OK);
    ck_assert_str_eq(text, "a\nb\n");
    ck_assert_uint_eq(len, 4);
    free(text);
    /* above the bound: refused by size, before reading */
    ck_assert_int_eq(rp_file_read_text(at("list.txt"), "list", 3, &text, &len, &err), RP_ERR_VALUE);
    ck_assert_ptr_null(text);
    /* a FIFO with no writer: refused at once, where open would block */
    ck_assert_int_eq(mkfifo(at("fifo"), 0600), 0);
    ck_assert_int_eq(rp_file_read_text(at("fifo"), "list", 100, &text, &len, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "FIFO") != NULL, "%s", err.msg);
    rp_tensor x = {0};
    ck_assert_int_eq(rp_npy_read(at("fifo"), &x, &err), RP_ERR_IO);
    /* an endless device */
    ck_assert_int_eq(rp_file_read_text("/dev/zero", "labels file", 100, &text, &len, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "character device") != NULL, "%s", err.msg);
    ck_assert_int_eq(rp_file_read_text(dir, "list", 100, &text, &len, &err), RP_ERR_IO);
    /* text with a NUL byte */
    f = fopen(at("nul.txt"), "w");
    fwrite("a\0b", 1, 3, f);
    fclose(f);
    ck_assert_int_eq(rp_file_read_text(at("nul.txt"), "list", 100, &text, &len, &err), RP_ERR_FORMAT);
    int fd;
    int64_t size;
    ck_assert_int_eq(rp_file_open_regular(at("list.txt"), "list", 0, &fd, &size, &err), RP_OK);
    ck_assert_int_eq(size, 4);
    /* the descriptor reads normally (O_NONBLOCK cleared) */
    char buf[8];
    ck_assert_int_eq(read(fd, buf, sizeof buf), 4);
    close(fd);
}
END_TEST

/* A sparse 3 GB "model": refused by its size before a byte is read (the
 * loader used to read 2 GiB of zeros first). */
START_TEST(sparse_model_refused_by_size)
{
    rp_error err = {0};
    int fd = open(at("big.onnx"), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)3 << 30), 0);
    close(fd);
    rp_model *m = NULL;
    ck_assert_int_eq(rp_model_open(at("big.onnx"), &m, &err), RP_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, "larger than 2 GiB") != NULL, "%s", err.msg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("files");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, writes_and_replaces_regular_files);
    tcase_add_test(tc, refuses_what_is_not_a_regular_file);
    tcase_add_test(tc, reads_within_bounds_without_blocking);
    tcase_add_test(tc, sparse_model_refused_by_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
