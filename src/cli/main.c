/* relprop command line: dispatch to the commands (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *usage_main =
    "usage: relprop <command> [options]\n"
    "\n"
    "Explain transformer classifiers exported to ONNX.\n"
    "\n"
    "commands:\n"
    "  run      run the model on an input tensor and print the top classes\n"
    "  explain  relevance maps, overlays and heatmaps for images and chosen classes/methods\n"
    "  eval     the paper's perturbation and segmentation tests over a labelled image list\n"
    "  inspect  describe a model: inputs, outputs, ops, attention layers, patch grid\n"
    "  bench    time the forward pass and explanation methods of a model\n"
    "\n"
    "options:\n"
    "  -h, --help     this help; 'relprop <command> --help' for a command's options\n"
    "  --version      print the version\n";


int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_BAD;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("relprop %s\n", RP_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(cmd, "explain") == 0)
        return cmd_explain(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 2, argv + 2);
    fprintf(stderr, "relprop: unknown command '%s'\n\n%s", cmd, usage_main);
    return EXIT_BAD;
}
