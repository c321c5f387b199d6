/* Test helper: a whole JSON file parsed with cJSON (meta.json, manifests). */
#ifndef TESTS_JSON_FILE_H
#define TESTS_JSON_FILE_H

#include <cjson/cJSON.h>

/* The parsed file, or NULL if it cannot be read or parsed. Caller frees
 * with cJSON_Delete. */
cJSON *json_file_read(const char *path);

#endif
