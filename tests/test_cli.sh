#!/usr/bin/env bash
# The CLI as a user meets it: good runs, and every kind of bad input giving
# one clear line on stderr, exit status 2, and no output file.
#   test_cli.sh RELPROP_BINARY SOURCE_DIR
set -u
shopt -s nullglob
relprop=$1
src=$2
bad=$src/tests/data/bad
oracle=$src/tests/oracle/fmnist_vit_s__timm17
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
ko() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect_error NAME PATTERN CMD...: exit 2, stderr matches PATTERN (grep -E), nothing in $tmp/out*.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  rm -f "$tmp"/out*
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  if [ $rc -ne 2 ]; then ko "$name: exit $rc, expected 2 ($(head -c 300 "$tmp/stderr"))"; return; fi
  if ! grep -qE -e "$pattern" "$tmp/stderr"; then ko "$name: stderr '$(head -c 400 "$tmp/stderr")' does not match /$pattern/"; return; fi
  if [ "$(wc -l <"$tmp/stderr")" -gt 3 ] && ! grep -q usage "$tmp/stderr"; then ko "$name: more than a short message"; return; fi
  local left=("$tmp"/out*)
  if [ ${#left[@]} -gt 0 ]; then ko "$name: left an output file behind: ${left[*]}"; return; fi
  ok
}

# --- good runs ---
if "$relprop" run --onnx "$oracle/model.onnx" --input "$oracle/inputs/input_0.npy" --top 3 \
     --labels "$src/models/fmnist_labels.txt" -o "$tmp/logits.npy" >"$tmp/stdout" 2>"$tmp/stderr"; then
  if grep -qE '^1 +[0-9]+ ' "$tmp/stdout" && [ "$(grep -cE '^[0-9] ' "$tmp/stdout")" -eq 3 ] && [ -s "$tmp/logits.npy" ]; then ok
  else ko "run: unexpected output: $(cat "$tmp/stdout")"; fi
else ko "run failed: $(cat "$tmp/stderr")"; fi
# The written logits equal the oracle's (byte-level header + 10 floats).
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  /usr/bin/python3 - "$tmp/logits.npy" "$oracle/expected/input_0/class_6/logits.npy" <<'PY' && ok || ko "run -o: logits differ from the oracle"
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and a.dtype == np.float32 and np.abs(a - b).max() <= 1e-4 else 1)
PY
else ko "/usr/bin/python3 has no numpy (scripts/setup.sh installs python3-numpy): logits not compared"; fi
if "$relprop" inspect --onnx "$oracle/model.onnx" >"$tmp/stdout" 2>"$tmp/stderr"; then
  grep -q "attention layers: 4" "$tmp/stdout" && grep -q "patch grid: 8x8" "$tmp/stdout" \
    && grep -q "prefix tokens: 1" "$tmp/stdout" && grep -q "unsupported ops: none" "$tmp/stdout" && ok \
    || ko "inspect: unexpected report: $(cat "$tmp/stdout")"
else ko "inspect failed: $(cat "$tmp/stderr")"; fi
"$relprop" --help >/dev/null && "$relprop" run --help | grep -q -- "--top" && ok || ko "--help"
"$relprop" --version | grep -qE '^relprop [0-9]' && ok || ko "--version"

# --- explain ---
x0="$oracle/inputs/input_0.npy"
if "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 6 --class 7 --method all -o "$tmp/maps" \
     --dump-intermediates "$tmp/inter" >"$tmp/stdout" 2>"$tmp/stderr"; then
  n=$(ls "$tmp/maps"/*.npy | wc -l)
  [ "$n" -eq 14 ] && [ "$(ls "$tmp/maps"/*.overlay.png | wc -l)" -eq 14 ] && [ -s "$tmp/maps/input_0.json" ] && [ -s "$tmp/maps/input_0.c6.transformer_attribution.npy" ] && [ -s "$tmp/maps/input_0.c7.lrp_full.npy" ] \
    && [ -s "$tmp/inter/input_0.c7.attn_cam_3.npy" ] && ok || ko "explain: wrote $n maps: $(ls "$tmp/maps" "$tmp/inter" | head -40)"
else ko "explain failed: $(cat "$tmp/stderr")"; fi
# Same command twice: byte-identical maps.
"$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 6 --class 7 --method all -o "$tmp/maps2" >/dev/null 2>&1
cmp -s "$tmp/maps/input_0.c6.transformer_attribution.npy" "$tmp/maps2/input_0.c6.transformer_attribution.npy" \
  && cmp -s "$tmp/maps/input_0.c7.lrp_full.npy" "$tmp/maps2/input_0.c7.lrp_full.npy" && ok || ko "explain is not deterministic"
# The maps have the patch grid's shape and match the oracle (python is optional here; the C tests check all cases).
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  /usr/bin/python3 - "$tmp/maps" "$oracle/expected/input_0" "$tmp/inter" <<'PY' && ok || ko "explain maps differ from the oracle"
import sys, numpy as np
d, e, inter = sys.argv[1:4]
for c in (6, 7):
    m = np.load(f"{d}/input_0.c{c}.transformer_attribution.npy")
    want = np.load(f"{e}/class_{c}/transformer_attribution.npy")
    assert m.shape == (8, 8), m.shape
    assert np.abs(m.ravel() - want).max() <= 1e-2 * np.abs(want).max()
    assert np.load(f"{d}/input_0.c{c}.lrp_full.npy").shape == (64, 64)
    assert np.load(f"{inter}/input_0.c{c}.attn_0.npy").shape == (4, 65, 65)
PY
else ko "/usr/bin/python3 has no numpy (scripts/setup.sh installs python3-numpy): maps not compared"; fi
# Default class: the top-1 prediction, transformer_attribution.
"$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" -o "$tmp/maps3" >"$tmp/stdout" 2>&1 \
  && [ "$(ls "$tmp/maps3"/*.npy | wc -l)" -eq 1 ] && ls "$tmp/maps3" | grep -qE '^input_0\.c[0-9]+\.transformer_attribution\.npy$' && ok \
  || ko "explain default: $(cat "$tmp/stdout")"
# Results are not overwritten unless asked.
expect_error "explain refuses to overwrite" "exists; pass --force" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" -o "$tmp/maps3"
"$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" -o "$tmp/maps3" --force >/dev/null 2>&1 && ok || ko "explain --force"
expect_error "run refuses to overwrite" "exists; pass --force" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o "$tmp/logits.npy"
# A model file larger than --max-memory is refused by its size, before it is read;
# one that fits but whose tensors do not, by the tensor that passes the limit.
expect_error "memory ceiling (file)" "model file has [0-9]+ bytes, more than --max-memory \(1000 bytes\)" "$relprop" run --onnx "$oracle/model.onnx" --input "$x0" --max-memory 1000
expect_error "memory ceiling" "exceed the memory limit of 2097152 bytes" "$relprop" run --onnx "$oracle/model.onnx" --input "$x0" --max-memory 2M
expect_error "inspect memory ceiling" "exceed the memory limit of 2097152 bytes" "$relprop" inspect --onnx "$oracle/model.onnx" --max-memory 2M
"$relprop" inspect --onnx "$oracle/model.onnx" --max-memory 1G >/dev/null 2>&1 && ok || ko "inspect --max-memory 1G"
expect_error "explain bad class" "class 12 out of range.*10 classes" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 12 -o "$tmp/out_maps"
expect_error "explain bad method" "unknown method 'nope'" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --method nope -o "$tmp/out_maps"
expect_error "explain without attention" "no Conv reads the image|no attention layer" "$relprop" explain --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o "$tmp/out_maps"
"$relprop" inspect --onnx "$oracle/model.onnx" --rules paper >"$tmp/stdout" 2>&1 \
  && grep -q "node '/blocks.0/attn/qkv/MatMul' (MatMul): linear -> alpha_beta" "$tmp/stdout" \
  && grep -q "node '/patch_embed/proj/Conv' (Conv): first_conv -> zb" "$tmp/stdout" && ok || ko "inspect --rules: $(tail -5 "$tmp/stdout")"
# torch's op-by-op exact GELU (Div, Erf, Add, Mul, Mul) runs as one Gelu node,
# and relevance crosses it as before (an identity, with the bias Add before it).
grep -q "fused: 4 exact GELUs" "$tmp/stdout" && grep -q "node '/blocks.0/mlp/act/Mul_1' (Gelu): region -> identity" "$tmp/stdout" \
  && grep -q "node '/blocks.0/mlp/act/Erf' (Erf): none" "$tmp/stdout" && ok || ko "GELU fusion: $(grep -m3 -i gelu "$tmp/stdout")"

# --- images: the main job's inputs ---
fm=$src/models/fmnist_vit.onnx
if [ -f "$fm" ]; then
  expect_error "unreadable image" "absent.png" "$relprop" explain --onnx "$fm" --image "$tmp/absent.png" -o "$tmp/out_img"
  expect_error "not an image" "not_an_image.png" "$relprop" explain --onnx "$fm" --image "$bad/not_an_image.png" -o "$tmp/out_img"
  expect_error "truncated image" "truncated.png" "$relprop" explain --onnx "$fm" --image "$bad/truncated.png" -o "$tmp/out_img"
  expect_error "zero-size image" "zero.ppm" "$relprop" explain --onnx "$fm" --image "$bad/zero.ppm" -o "$tmp/out_img"
  expect_error "labels with the wrong number of lines" "labels_3.txt.*3 lines, expected 10" "$relprop" explain --onnx "$fm" --image "$bad/ok.png" --labels "$bad/labels_3.txt" -o "$tmp/out_img"
  : >"$tmp/a_file"
  expect_error "unwritable output directory" "a_file" "$relprop" explain --onnx "$fm" --image "$bad/ok.png" -o "$tmp/a_file/out"
  # A batch: the bad image is reported, the others complete, the exit status says something failed.
  "$relprop" explain --onnx "$fm" --image "$bad/ok.png" "$bad/not_an_image.png" "$src/samples/"*.png -o "$tmp/batch" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  results=("$tmp/batch"/*.json)
  samples=("$src/samples/"*.png)
  n_ok=${#results[@]}
  n_samples=${#samples[@]}
  [ $rc -eq 2 ] && [ "$n_ok" -eq $((n_samples + 1)) ] && grep -q "not_an_image.png" "$tmp/stderr" \
    && grep -q "1 failed" "$tmp/stdout" && ok || ko "batch with a bad image: rc $rc, $n_ok results: $(cat "$tmp/stderr")"
  # Shards split a list deterministically and cover it exactly once.
  printf '%s\n' "$bad/ok.png" "$src/samples/"*.png >"$tmp/list.txt"
  total=$(wc -l <"$tmp/list.txt")
  for k in 0 1 2; do
    "$relprop" explain --onnx "$fm" --list "$tmp/list.txt" --shard $k/3 -o "$tmp/shard$k" >/dev/null 2>&1 || true
  done
  covered=$(cat "$tmp"/shard*/*.json 2>/dev/null | grep -c '"path"')
  [ "$covered" -eq "$total" ] && ok || ko "shards covered $covered of $total"
  expect_error "bad shard" "--shard must be K/N" "$relprop" explain --onnx "$fm" --list "$tmp/list.txt" --shard 3/3 -o "$tmp/out_img"
else ko "$fm is missing: the shipped model is part of the checkout"; fi
expect_error "wrong channel count" "2-channel images" "$relprop" explain --onnx "$bad/two_channels.onnx" --image "$bad/ok.png" --method lrp_full -o "$tmp/out_img"

# --- rule developers: plugins, rule sets, conservation ---
leaky=$(dirname "$relprop")/tests/plugins/leaky.so
if [ -f "$leaky" ]; then
  printf '{"base": "paper", "rules": [{"kind": "unary", "rule": "leaky_identity"}]}\n' >"$tmp/leaky.json"
  "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 6 --plugin "$leaky" --rules "$tmp/leaky.json" \
    --check-conservation -o "$tmp/cons" >"$tmp/stdout" 2>"$tmp/stderr" \
    && grep -qE "[1-9][0-9]* node\(s\) violate" "$tmp/stdout" && grep -q "leaky_identity): .*\[VIOLATED\]" "$tmp/stdout" \
    && ok || ko "conservation report with a leaky plugin: $(head -c 600 "$tmp/stdout") $(cat "$tmp/stderr")"
  "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 6 --check-conservation -o "$tmp/cons2" >"$tmp/stdout" 2>&1 \
    && grep -q " 0 node(s) violate" "$tmp/stdout" && ok || ko "paper rules should conserve: $(head -3 "$tmp/stdout")"
else ko "$leaky was not built (tests/CMakeLists.txt builds the test plugins)"; fi
expect_error "missing plugin" "nope.so" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --plugin "$tmp/nope.so" -o "$tmp/out_p"
expect_error "unknown rule set" "unknown rule set|nosuchset" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --rules nosuchset -o "$tmp/out_p"
"$relprop" inspect --onnx "$oracle/model.onnx" --rules attnlrp >"$tmp/stdout" 2>&1 && grep -q "linear -> epsilon" "$tmp/stdout" \
  && ok || ko "inspect --rules attnlrp: $(grep -m3 linear "$tmp/stdout")"

# --- bad command lines ---
expect_error "no command" "usage" "$relprop"
expect_error "unknown command" "unknown command" "$relprop" frobnicate
expect_error "missing options" "needs --onnx" "$relprop" run
expect_error "unknown option" "unknown option '--bogus'" "$relprop" run --bogus 1
expect_error "bad --top" "--top must be an integer" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" --top x

# --- bad models ---
expect_error "missing model" "nope.onnx.*(No such file|cannot)" "$relprop" run --onnx "$tmp/nope.onnx" --input "$bad/x_ok.npy" -o "$tmp/out.npy"
head -c 1000 "$oracle/model.onnx" >"$tmp/truncated.onnx"
expect_error "truncated model" "truncated.onnx.*(not an ONNX|truncated|corrupt)" "$relprop" run --onnx "$tmp/truncated.onnx" --input "$bad/x_ok.npy" -o "$tmp/out.npy"
echo "this is not a model" >"$tmp/text.onnx"
expect_error "non-ONNX file" "text.onnx.*(not an ONNX|corrupt|no graph)" "$relprop" run --onnx "$tmp/text.onnx" --input "$bad/x_ok.npy" -o "$tmp/out.npy"
: >"$tmp/empty.onnx"
expect_error "empty file" "empty.onnx" "$relprop" run --onnx "$tmp/empty.onnx" --input "$bad/x_ok.npy"
expect_error "unsupported op" "unsupported_op.onnx.*node 'odd_op'.*Hardmax.*unsupported" "$relprop" run --onnx "$bad/unsupported_op.onnx" --input "$bad/x_ok.npy" -o "$tmp/out.npy"
expect_error "foreign domain" "node 'custom'.*com.example.*FancyNorm" "$relprop" run --onnx "$bad/foreign_domain.onnx" --input "$bad/x_ok.npy"
expect_error "shape mismatch" "shape_mismatch.onnx.*node 'fc_bad'.*MatMul" "$relprop" run --onnx "$bad/shape_mismatch.onnx" --input "$bad/x_ok.npy" -o "$tmp/out.npy"
expect_error "bad attribute" "bad_attribute.onnx.*node 'sm_bad'.*Softmax.*axis" "$relprop" run --onnx "$bad/bad_attribute.onnx" --input "$bad/x_ok.npy"
expect_error "missing external data" "missing_weights.bin" "$relprop" run --onnx "$bad/missing_external.onnx" --input "$bad/x_ok.npy"
# inspect still lists the unsupported node before refusing.
"$relprop" inspect --onnx "$bad/unsupported_op.onnx" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ $rc -eq 2 ] && grep -q "node 'odd_op': Hardmax" "$tmp/stdout" && ok || ko "inspect unsupported: rc $rc, $(cat "$tmp/stdout")"

# --- bad inputs ---
expect_error "wrong input shape" "x_wrong_shape.npy.*expects float32 \[1,4\], got float32 \[1,5\]" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_wrong_shape.npy" -o "$tmp/out.npy"
expect_error "wrong input dtype" "x_float64.npy.*float64.*expected float32" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_float64.npy" -o "$tmp/out.npy"
expect_error "truncated npy" "x_truncated.npy.*truncated" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_truncated.npy" -o "$tmp/out.npy"
expect_error "missing npy" "absent.npy" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$tmp/absent.npy"
expect_error "labels count" "labels_2.txt.*2 lines, expected 3" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" --labels "$bad/labels_2.txt" -o "$tmp/out.npy"
expect_error "unwritable output" "no_such_dir" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o "$tmp/no_such_dir/out.npy"

# The tiny model: [1,2,3,4] x arange(12).reshape(4,3)/10 = [6, 7, 8].
"$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" --labels "$bad/labels_3.txt" >"$tmp/stdout" 2>&1 \
  && grep -qE '^1 +2 +bird +8\.00000' "$tmp/stdout" && ok || ko "tiny model: $(cat "$tmp/stdout")"

# --batch: a symbolic-batch model explains 2 inputs per run; an input of the
# wrong size is reported and the others are still written; the maps are those
# of --batch 1 (tests/test_variants.c compares every method's numbers).
dyn="$(dirname "$oracle")/../variants/dynamic_batch_op17"
cp "$dyn/input.npy" "$tmp/first.npy" && cp "$dyn/input.npy" "$tmp/third.npy"
"$relprop" explain --onnx "$dyn/model.onnx" --input "$tmp/first.npy" "$bad/x_ok.npy" "$tmp/third.npy" --batch 2 \
    -o "$tmp/batch" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ $rc -eq 2 ] && grep -q "x_ok.npy: shape \\[1,4\\], but the model takes \\[1,3,32,32\\] per input" "$tmp/stderr" \
  && grep -q "explained 2 of 3 inputs; 1 failed" "$tmp/stdout" && [ -f "$tmp/batch/first.json" ] && [ -f "$tmp/batch/third.json" ] \
  && cmp -s "$(ls "$tmp"/batch/first.c*.transformer_attribution.npy)" "$(ls "$tmp"/batch/third.c*.transformer_attribution.npy)" \
  && ok || ko "--batch: rc $rc, $(cat "$tmp/stderr" "$tmp/stdout")"
expect_error "--batch on a fixed-batch model" "fixed leading dimension.*dynamic_axes" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --batch 2 -o "$tmp/out_b"
expect_error "--batch with --check-conservation" "batch 1 only" "$relprop" explain --onnx "$dyn/model.onnx" --input "$tmp/first.npy" --batch 2 --check-conservation -o "$tmp/out_b"

# relprop bench: one CSV row per mode, in the order asked, with positive times.
"$relprop" bench --onnx "$oracle/model.onnx" --mode forward rollout transformer_attribution --runs 2 --warmup 0 \
    --threads 1 --csv "$tmp/bench.csv" >"$tmp/stdout" 2>&1 \
  && head -1 "$tmp/bench.csv" | grep -qx "model,mode,threads,runs,median_s,min_s,max_s,peak_rss_mib" \
  && [ "$(cut -d, -f2 "$tmp/bench.csv" | tail -n +2 | tr '\n' ' ')" = "forward rollout transformer_attribution " ] \
  && awk -F, 'NR > 1 && !($5 > 0 && $6 <= $5 && $5 <= $7 && $8 > 0) { exit 1 }' "$tmp/bench.csv" \
  && grep -q "peak RSS" "$tmp/stdout" && ok || ko "bench: $(cat "$tmp/stdout" "$tmp/bench.csv")"
expect_error "bench unknown mode" "unknown mode 'nope'" "$relprop" bench --onnx "$oracle/model.onnx" --mode nope
expect_error "bench csv exists" "bench.csv" "$relprop" bench --onnx "$oracle/model.onnx" --runs 1 --csv "$tmp/bench.csv"

# Labels in the model's metadata that do not match its classes name no class:
# a warning, and class indices instead (appended as a ModelProto field 14
# entry, which protobuf merges into the message).
/usr/bin/python3 - "$oracle/model.onnx" "$tmp/labels_few.onnx" <<'PY'
import sys
def field(num, data):
    n, out = len(data), bytearray([num << 3 | 2])
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out) + data
entry = field(1, b"relprop.labels") + field(2, b"only\ntwo")
open(sys.argv[2], "wb").write(open(sys.argv[1], "rb").read() + field(14, entry))
PY
"$relprop" run --onnx "$tmp/labels_few.onnx" --input "$x0" >"$tmp/stdout" 2>"$tmp/stderr" \
  && grep -q "relprop.labels has 2 lines, the model has 10 classes" "$tmp/stderr" && grep -qE '^1 +[0-9]+ +- ' "$tmp/stdout" \
  && ok || ko "labels metadata of the wrong length: $(cat "$tmp/stderr" "$tmp/stdout")"

echo "cli: $passed passed, $failed failed"
[ $failed -eq 0 ]
