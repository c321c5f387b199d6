/* Developer tool: run ONNX node-test folders given on the command line and
 * print PASS / FAIL / N/A with the reason. Exit 1 if any failed. */
#include <stdio.h>
#include <string.h>

#include "support/node_case.h"

int main(int argc, char **argv)
{
    int pass = 0, fail = 0, na = 0;
    for (int i = 1; i < argc; i++) {
        char why[2048];
        const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        if (!*name) /* trailing slash */
            name = argv[i];
        switch (node_case_run(argv[i], why, sizeof why)) {
        case NODE_CASE_PASS: pass++; printf("PASS %s\n", name); break;
        case NODE_CASE_FAIL: fail++; printf("FAIL %s: %s\n", name, why); break;
        case NODE_CASE_NOT_APPLICABLE: na++; printf("N/A  %s: %s\n", name, why); break;
        }
    }
    printf("%d passed, %d failed, %d not applicable\n", pass, fail, na);
    return fail ? 1 : 0;
}
