#!/usr/bin/env bash
# ctest in BUILD_DIR, then how many checks were skipped and why (each test
# that cannot run a check records it, tests/support/skip.h). Exit: ctest's.
#   run_ctest.sh BUILD_DIR [ctest options...]
set -u
build=$1
shift
log=$(cd "$build" && pwd)/skipped.txt
rm -f "$log"
(cd "$build" && RELPROP_SKIP_LOG="$log" ctest "$@")
rc=$?
if [ -s "$log" ]; then
  echo "skipped checks in $build: $(wc -l <"$log")"
  sort "$log" | sed 's/^/  /'
else
  echo "skipped checks in $build: 0"
fi
exit $rc
