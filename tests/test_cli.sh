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
