#!/usr/bin/env bash
# The main job on the shipped model and a sample image: the top-5 predictions
# and class-specific heatmaps for the image's two items, as a panel PNG.
set -euo pipefail
relprop=${1:-build/relprop}
cd "$(dirname "$0")/.."
model=models/fmnist_vit.onnx
image=${DEMO_IMAGE:-samples/ankleboot_trouser.png}
out=${DEMO_OUT:-demo_out}
"$relprop" explain --onnx "$model" --image "$image" --top-classes 2 \
  --method transformer_attribution --method rollout --method lrp_full \
  --panel --force -o "$out"
echo
echo "The panel (input | overlays for the two top classes): $out/$(basename "${image%.*}").panel.png"
