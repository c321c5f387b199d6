#!/usr/bin/env bash
# Memcheck over the Python package (make test-valgrind): tests/python/vg_driver.py
# under valgrind with Python's allocator off (PYTHONMALLOC=malloc), against
# the package run.sh built in BUILD_DIR/python. CPython and numpy keep
# memory until exit by design, so only what involves relprop counts: any
# memcheck error, and any definitely or indirectly lost block, whose stack
# passes through the extension (_core.c) or the library (rp_* functions).
#   valgrind.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: valgrind.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-/usr/bin/python3}
[ -d "$build/python/relprop" ] || { echo "python valgrind: $build/python has no package (run make test-python)"; exit 1; }
log=$build/python-valgrind.log
PYTHONPATH="$build/python" PYTHONMALLOC=malloc valgrind --leak-check=full --show-leak-kinds=definite,indirect \
  --num-callers=60 --log-file="$log" "$py" "$src/tests/python/vg_driver.py" "$src"
rc=$?
[ $rc -eq 0 ] || { echo "python valgrind: the driver exited $rc"; tail -30 "$log"; exit 1; }
# Memcheck's records are blocks of lines starting "==PID== " and separated by
# a bare "==PID==" line; keep those that are errors or lost blocks and that
# name our code.
ours=$(awk '
  /^==[0-9]+== *$/ { if (rec != "" && keep && mine) print rec "\n"; rec = ""; keep = 0; mine = 0; next }
  { rec = rec "\n" $0 }
  /Invalid (read|write|free)|uninitialised|Mismatched|definitely lost in|indirectly lost in|overlap/ { keep = 1 }
  /_core\.c|[ (]rp_[a-z_0-9]+ \(|relprop/ { mine = 1 }
  END { if (rec != "" && keep && mine) print rec }
' "$log")
if [ -n "$ours" ]; then
  echo "FAIL (valgrind): the Python package"
  echo "$ours" | head -80
  exit 1
fi
echo "python valgrind: no errors or leaks in relprop's code ($(grep -c "definitely lost in" "$log") lost-block records elsewhere, CPython's and numpy's; log: $log)"
