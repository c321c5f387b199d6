#include "json_file.h"

#include <stdio.h>
#include <stdlib.h>

cJSON *json_file_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    cJSON *j = NULL;
    char *buf = NULL;
    long len;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)len + 1);
    if (!buf)
        goto done;
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = 0;
    j = cJSON_Parse(buf);
done:
    free(buf);
    fclose(f);
    return j;
}
