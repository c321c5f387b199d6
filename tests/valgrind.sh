#!/usr/bin/env bash
# Memcheck over a subset of the suite (the rest runs under ASan/UBSan): the
# Check tests without forking, and the CLI's main paths. Any error or leak
# fails.
#   valgrind.sh BUILD_DIR
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
passed=0
check() {
  local name=$1
  shift
  "$@" >"$tmp/out" 2>&1
  local rc=$?
  if [ $rc -eq 99 ] || grep -q "ERROR SUMMARY: [1-9]" "$tmp/out"; then
    echo "FAIL (valgrind): $name"; tail -30 "$tmp/out"; failed=$((failed + 1))
  elif [ $rc -ne "${expect_rc:-0}" ]; then
    echo "FAIL: $name: exit $rc under valgrind, expected ${expect_rc:-0}"; tail -30 "$tmp/out"; failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
}
cd "$src/tests"
# test_jpeg and test_images decode real files with Debian's prebuilt
# libjpeg-turbo and libpng, which ASan does not instrument: memcheck sees
# inside them (no pixel from uninitialised memory). libjpeg-turbo's SIMD
# code is known to confuse memcheck (libjpeg-turbo issue 238: padding lanes
# read and discarded look used), so it runs its portable C code here, which
# test_jpeg also requires to give Pillow's pixels exactly.
export JSIMD_FORCENONE=1
for t in test_loader test_plan test_pool test_rules test_maps test_elementwise test_shape_ops test_eval test_jpeg test_images test_files; do
  [ -x "$build/tests/$t" ] || { echo "missing $build/tests/$t"; failed=$((failed + 1)); continue; }
  check "$t" env CK_FORK=no "${vg[@]}" "$build/tests/$t"
done
oracle=$src/tests/oracle/fmnist_vit_s__timm13
check "explain all methods" "${vg[@]}" "$build/relprop" explain --onnx "$oracle/model.onnx" \
  --input "$oracle/inputs/input_0.npy" --class 6 --method all -o "$tmp/maps"
expect_rc=2 check "run with a bad model" "${vg[@]}" "$build/relprop" run --onnx "$src/tests/data/bad/shape_mismatch.onnx" \
  --input "$src/tests/data/bad/x_ok.npy"
head -c 5000 "$oracle/model.onnx" >"$tmp/truncated.onnx"
expect_rc=2 check "truncated model" "${vg[@]}" "$build/relprop" inspect --onnx "$tmp/truncated.onnx"
echo "valgrind: $passed passed, $failed failed"
[ $failed -eq 0 ]
