/* Test helper: a check that cannot run on this machine says so.
 *
 * test_skip prints "SKIPPED: <what>: <why>" on stderr and appends the same
 * line to the file named by RELPROP_SKIP_LOG (set by tests/run_ctest.sh), so
 * that `make test` ends with how many checks did not run and why. A test
 * that skips must still have checked something else, or fail. */
#ifndef TESTS_SKIP_H
#define TESTS_SKIP_H

void test_skip(const char *what, const char *why_fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
