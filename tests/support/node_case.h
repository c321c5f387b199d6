/* One ONNX backend node test folder (model.onnx and test_data_set_N/ with .pb files) run
 * through relprop's loader, prepare and forward, compared with ONNX's own
 * tolerance: |y - ref| <= 1e-7 + 1e-3 |ref|, shapes and dtypes equal,
 * integers and bools exact. */
#ifndef TESTS_NODE_CASE_H
#define TESTS_NODE_CASE_H

#include <stddef.h>

typedef enum node_case_result {
    NODE_CASE_PASS,
    NODE_CASE_FAIL,
    NODE_CASE_NOT_APPLICABLE /* uses an op relprop does not implement at all */
} node_case_result;

/* Runs every test_data_set_* of dir. why receives the reason on FAIL / N/A. */
node_case_result node_case_run(const char *dir, char *why, size_t why_len);

/* Reads a skip list ("test_name  reason" per line, # comments) and returns
 * the reason for name, or NULL. The returned string is static storage. */
const char *node_case_skip_reason(const char *skip_file, const char *name);

#endif
