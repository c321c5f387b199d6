#!/usr/bin/env bash
# The main job on the shipped model and a sample input.
set -euo pipefail
relprop=${1:-build/relprop}
cd "$(dirname "$0")/.."
model=tests/oracle/fmnist_vit_s__timm17/model.onnx
input=tests/oracle/fmnist_vit_s__timm17/inputs/input_0.npy
"$relprop" inspect --onnx "$model"
echo
"$relprop" run --onnx "$model" --input "$input" --labels models/fmnist_labels.txt
