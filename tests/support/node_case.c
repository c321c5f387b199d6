#include "node_case.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"

static int compare(const rp_tensor *got, const rp_tensor *want, char *why, size_t len)
{
    char a[128], b[128];
    if (got->dtype != want->dtype) {
        snprintf(why, len, "dtype %s, expected %s", rp_dtype_name(got->dtype), rp_dtype_name(want->dtype));
        return 0;
    }
    if (!rp_shape_equal(got, want)) {
        snprintf(why, len, "shape %s, expected %s", rp_shape_str(got, a, sizeof a), rp_shape_str(want, b, sizeof b));
        return 0;
    }
    bool is_float = want->dtype == RP_FLOAT || want->dtype == RP_DOUBLE;
    for (int64_t i = 0; i < want->count; i++) {
        if (is_float) {
            double y = rp_tensor_get_f64(got, i), r = rp_tensor_get_f64(want, i);
            if (isnan(r) && isnan(y))
                continue;
            if (isinf(r) && y == r)
                continue;
            if (!(fabs(y - r) <= 1e-7 + 1e-3 * fabs(r))) {
                snprintf(why, len, "element %lld is %.9g, expected %.9g", (long long)i, y, r);
                return 0;
            }
        } else if (want->dtype == RP_UINT64) {
            if (((const uint64_t *)got->data)[i] != ((const uint64_t *)want->data)[i]) {
                snprintf(why, len, "element %lld differs", (long long)i);
                return 0;
            }
        } else if (rp_tensor_get_i64(got, i) != rp_tensor_get_i64(want, i)) {
            snprintf(why, len, "element %lld is %lld, expected %lld", (long long)i,
                     (long long)rp_tensor_get_i64(got, i), (long long)rp_tensor_get_i64(want, i));
            return 0;
        }
    }
    return 1;
}

static node_case_result run_set(const char *dir, const char *set, char *why, size_t len)
{
    char path[4096];
    rp_error err = {0};
    rp_graph *g = NULL;
    rp_tensor *inputs = NULL;
    const rp_tensor **feed = NULL;
    node_case_result res = NODE_CASE_FAIL;

    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (rp_graph_load(path, &g, &err)) {
        snprintf(why, len, "load: %s", err.msg);
        /* At load time "unsupported" means a dtype relprop does not hold by
         * design (string, float16, ...), not a missing kernel. */
        return err.code == RP_ERR_UNSUPPORTED ? NODE_CASE_NOT_APPLICABLE : NODE_CASE_FAIL;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (!rp_op_known(g->nodes[i].op_type)) {
            snprintf(why, len, "op %s is not implemented", g->nodes[i].op_type);
            res = NODE_CASE_NOT_APPLICABLE;
            goto done;
        }
    inputs = calloc((size_t)g->n_inputs + 1, sizeof *inputs);
    feed = calloc((size_t)g->n_inputs + 1, sizeof *feed);
    if (!inputs || !feed)
        goto done;
    for (int i = 0; i < g->n_inputs; i++) {
        snprintf(path, sizeof path, "%s/%s/input_%d.pb", dir, set, i);
        if (rp_tensor_load_pb(path, &inputs[i], NULL, &err)) {
            snprintf(why, len, "input %d: %s", i, err.msg);
            if (err.code == RP_ERR_UNSUPPORTED)
                res = NODE_CASE_NOT_APPLICABLE;
            goto done;
        }
        feed[i] = &inputs[i];
        if (rp_graph_value_needs_data(g, g->inputs[i]) && rp_graph_bind_constant(g, g->inputs[i], &inputs[i], &err)) {
            snprintf(why, len, "bind: %s", err.msg);
            goto done;
        }
        /* The test's input fixes the shape; the file's type may leave dims symbolic. */
        rp_value *v = &g->values[g->inputs[i]];
        if (v->kind == RP_VALUE_INPUT) {
            rp_dtype declared = v->t.dtype != RP_UNDEFINED ? v->t.dtype : inputs[i].dtype;
            rp_tensor_set_shape(&v->t, declared, inputs[i].rank, inputs[i].dims);
            v->shape_known = true;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        rp_tensor want = {0};
        snprintf(path, sizeof path, "%s/%s/output_%d.pb", dir, set, i);
        rp_status st = rp_tensor_load_pb(path, &want, NULL, &err);
        rp_tensor_release(&want);
        if (st == RP_ERR_UNSUPPORTED) {
            snprintf(why, len, "output %d: %s", i, err.msg);
            res = NODE_CASE_NOT_APPLICABLE;
            goto done;
        }
    }
    if (rp_graph_prepare(g, &err)) {
        snprintf(why, len, "prepare: %s", err.msg);
        goto done;
    }
    if (rp_graph_forward(g, feed, g->n_inputs, &err)) {
        snprintf(why, len, "forward: %s", err.msg);
        goto done;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        rp_tensor want = {0};
        snprintf(path, sizeof path, "%s/%s/output_%d.pb", dir, set, i);
        if (rp_tensor_load_pb(path, &want, NULL, &err)) {
            snprintf(why, len, "output %d: %s", i, err.msg);
            if (err.code == RP_ERR_UNSUPPORTED)
                res = NODE_CASE_NOT_APPLICABLE;
            goto done;
        }
        char reason[512];
        int ok = compare(&g->values[g->outputs[i]].t, &want, reason, sizeof reason);
        rp_tensor_release(&want);
        if (!ok) {
            snprintf(why, len, "output %d ('%s'): %s", i, g->values[g->outputs[i]].name, reason);
            goto done;
        }
    }
    res = NODE_CASE_PASS;
done:
    if (inputs)
        for (int i = 0; i < g->n_inputs; i++)
            rp_tensor_release(&inputs[i]);
    free(inputs);
    free(feed);
    rp_graph_free(g);
    return res;
}

node_case_result node_case_run(const char *dir, char *why, size_t why_len)
{
    why[0] = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(why, why_len, "cannot open %s", dir);
        return NODE_CASE_FAIL;
    }
    struct dirent *e;
    int sets = 0;
    node_case_result res = NODE_CASE_PASS;
    while ((e = readdir(d)) && res == NODE_CASE_PASS) {
        if (strncmp(e->d_name, "test_data_set_", 14) != 0)
            continue;
        sets++;
        res = run_set(dir, e->d_name, why, why_len);
    }
    closedir(d);
    if (sets == 0 && res == NODE_CASE_PASS) {
        snprintf(why, why_len, "no test_data_set_* in %s", dir);
        return NODE_CASE_FAIL;
    }
    return res;
}

const char *node_case_skip_reason(const char *skip_file, const char *name)
{
    static char reason[512];
    FILE *f = fopen(skip_file, "r");
    if (!f)
        return NULL;
    char line[1024];
    const char *found = NULL;
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || strncmp(line, name, nl) != 0 || (line[nl] != ' ' && line[nl] != '\t'))
            continue;
        char *r = line + nl;
        while (*r == ' ' || *r == '\t')
            r++;
        r[strcspn(r, "\n")] = 0;
        snprintf(reason, sizeof reason, "%s", r);
        found = reason;
        break;
    }
    fclose(f);
    return found;
}
