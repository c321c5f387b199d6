#!/usr/bin/env bash
# The evaluation benchmark (issue 4): regenerate the held-out fmnist-pairs set
# with tools/fmnist_pairs.py and run `relprop eval` for all seven methods on
# the shipped model; the table and the plot land in docs/eval/.
#
#   bash scripts/bench_eval.sh [path/to/relprop]
#
# The set: BENCH_COUNT canvases (default 500) of the test split (Fashion-MNIST
# t10k items only), seed 2021, canvases BENCH_START.. (default 2000..2499).
# The model card's held-out set, used to pick the checkpoint, is canvases
# 0..1999 of the same split and seed, so the benchmark never saw selection.
# Every canvas holds two items with their masks: 2 rows per canvas, k = 2.
# Deterministic: the same model gives the same files, byte for byte.
# About 0.6 s of CPU per row on one core (1000 rows: ~10 min).
set -euo pipefail
relprop=${1:-build/relprop}
cd "$(dirname "$0")/.."
model=${BENCH_MODEL:-models/fmnist_vit.onnx}
count=${BENCH_COUNT:-500}
start=${BENCH_START:-2000}
data=${BENCH_DATA:-${TMPDIR:-/tmp}/relprop_bench_eval}
out=${BENCH_OUT:-docs/eval}

rm -rf "$data"
/usr/bin/python3 tools/fmnist_pairs.py --split test --seed 2021 --count "$count" --start "$start" --out "$data"
mkdir -p "$out"
"$relprop" eval --onnx "$model" --data "$data/LIST.csv" --method all --threads 1 --force -o "$out" \
  --title "relprop eval: $(basename "$model"), fmnist pairs test seed 2021, canvases $start..$((start + count - 1))"
echo
echo "table: $out/results.csv (details and curves: $out/results.json); plot: $out/perturbation.svg, .png"
