#!/usr/bin/env bash
# Builds the Python package against a CMake build of relprop and runs its
# tests and the README's example (make test-python / test-sanitize).
#   run.sh BUILD_DIR            the package linked with BUILD_DIR/librelprop.a
#   run.sh BUILD_DIR asan       the same with AddressSanitizer and UBSan (the
#                               sanitizer build's archive; the runtimes are
#                               preloaded into /usr/bin/python3)
#   run.sh BUILD_DIR build      only build the package (for valgrind.sh)
# Fails on any failing test, and when pytest ran no tests (its exit code 5
# or a summary without "passed").
set -u
build=$(cd "${1:?usage: run.sh BUILD_DIR [asan]}" && pwd)
mode=${2:-}
src=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-/usr/bin/python3}
out=$build/python
env_run=(env)
pytest_extra=()
if [ "$mode" = asan ]; then
  flags="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow"
  export RELPROP_EXTRA_CFLAGS="$flags" RELPROP_EXTRA_LDFLAGS="$flags"
  preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  # CPython keeps much of what it allocates until exit by design, so the
  # leak checker stays off here; leaks are tests/python/valgrind.sh's and
  # test_threads_leaks.py's to find.
  env_run=(env LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1)
  # 2000 rounds add nothing ASan would see that the other tests do not, at five times the time.
  pytest_extra=(--deselect tests/python/test_threads_leaks.py::test_no_leaks_over_1000_calls)
fi
echo "python: building the package against $build"
(cd "$src/python" && RELPROP_BUILD_DIR="$build" "$py" setup.py -q build --force --build-base "$build/python-build" \
  --build-lib "$out" >"$build/python-build.log" 2>&1) || { cat "$build/python-build.log"; echo "python: build failed"; exit 1; }
[ "$mode" = build ] && exit 0
log=$build/python-pytest.log
cd "$src"
PYTHONPATH="$out" RELPROP_CLI="$build/relprop" PYTHONDONTWRITEBYTECODE=1 "${env_run[@]}" \
  "$py" -m pytest -p no:cacheprovider -rs "${pytest_extra[@]}" tests/python 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 5 ]; then
  echo "python: pytest collected no tests (exit 5)"; exit 1
fi
[ "$rc" -eq 0 ] || { echo "python: pytest failed (exit $rc)"; exit 1; }
grep -Eq "^=+ .*[0-9]+ passed" "$log" || { echo "python: no passing tests in pytest's summary"; exit 1; }
rm -rf "$build/python-example"
PYTHONPATH="$out" "${env_run[@]}" "$py" examples/python/notebook.py -o "$build/python-example" || {
  echo "python: examples/python/notebook.py failed"; exit 1; }
for f in Coat.png T-shirt_top.png strip.png; do
  [ -s "$build/python-example/$f" ] || { echo "python: the example did not write $f"; exit 1; }
done
# The README's snippet, as written, from a folder holding models/ and samples/.
snippet=$build/python-readme
rm -rf "$snippet" && mkdir -p "$snippet"
ln -s "$src/models" "$snippet/models" && ln -s "$src/samples" "$snippet/samples"
awk '/^## From Python/{s=1} /^## What runs/{s=0} s && /^```python$/{f=1; next} /^```$/{f=0} s && f' "$src/README.md" \
  >"$snippet/readme.py"
[ -s "$snippet/readme.py" ] || { echo "python: no python snippet in README's From Python"; exit 1; }
(cd "$snippet" && PYTHONPATH="$out" "${env_run[@]}" "$py" readme.py >/dev/null) || {
  echo "python: README's snippet failed"; exit 1; }
for f in class4.png class0.png; do
  [ -s "$snippet/$f" ] || { echo "python: README's snippet did not write $f"; exit 1; }
done
echo "python: tests, example and README snippet passed ($mode${mode:+ }build $build)"
