#!/usr/bin/env bash
# The CLI as a user meets it: good runs, and every kind of bad input giving
# one clear line on stderr, exit status 2, and no output file.
#   test_cli.sh RELPROP_BINARY SOURCE_DIR
set -u
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
  if ls "$tmp"/out* >/dev/null 2>&1; then ko "$name: left an output file behind"; return; fi
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
fi
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
  n=$(ls "$tmp/maps" | wc -l)
  [ "$n" -eq 14 ] && [ -s "$tmp/maps/input_0.c6.transformer_attribution.npy" ] && [ -s "$tmp/maps/input_0.c7.lrp_full.npy" ] \
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
fi
# Default class: the top-1 prediction, transformer_attribution.
"$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" -o "$tmp/maps3" >"$tmp/stdout" 2>&1 \
  && [ "$(ls "$tmp/maps3" | wc -l)" -eq 1 ] && ls "$tmp/maps3" | grep -qE '^input_0\.c[0-9]+\.transformer_attribution\.npy$' && ok \
  || ko "explain default: $(cat "$tmp/stdout")"
expect_error "explain bad class" "class 12 out of range.*10 classes" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --class 12 -o "$tmp/out_maps"
expect_error "explain bad method" "unknown method 'nope'" "$relprop" explain --onnx "$oracle/model.onnx" --input "$x0" --method nope -o "$tmp/out_maps"
expect_error "explain without attention" "no attention layer" "$relprop" explain --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o "$tmp/out_maps"
"$relprop" inspect --onnx "$oracle/model.onnx" --rules paper >"$tmp/stdout" 2>&1 \
  && grep -q "node '/blocks.0/attn/qkv/MatMul' (MatMul): linear -> alpha_beta" "$tmp/stdout" \
  && grep -q "node '/patch_embed/proj/Conv' (Conv): first_conv -> zb" "$tmp/stdout" && ok || ko "inspect --rules: $(tail -5 "$tmp/stdout")"

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

echo "cli: $passed passed, $failed failed"
[ $failed -eq 0 ]
