#!/usr/bin/env bash
# The malformed-input corpus (tests/regressions/, made by
# tools/make_regressions.py, plus what the fuzzers found): every case must
# exit with status 2, print a message naming the problem (cases.tsv's
# pattern), leave no output file, and — in the sanitizer build — draw no
# sanitizer report. Cases whose kind starts with any- (mutations that may
# still be well-formed) only must not crash: status 0 or 2, no report.
# Cases whose kind starts with bug- are known bugs outside the fuzzing work:
# reported XFAIL/XPASS, never failing the test.
#   test_regressions.sh RELPROP_BINARY SOURCE_DIR
set -u
relprop=$1
src=$2
reg=$src/tests/regressions
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
xfail=0
ko() { failed=$((failed + 1)); echo "FAIL: $*"; }

[ -s "$reg/cases.tsv" ] || { echo "test_regressions: $reg/cases.tsv is missing"; exit 1; }

# A crash, a sanitizer report or a timeout is a failure for every kind.
sanitizer_report() { grep -qE 'ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer|runtime error:|SUMMARY: .*Sanitizer' "$1"; }

while IFS=$'\t' read -r kind model input pattern what; do
  case $kind in '#'*|'') continue ;; esac
  may_pass=0
  known_bug=0
  case $kind in any-*) may_pass=1; kind=${kind#any-} ;; bug-*) known_bug=1; kind=${kind#bug-} ;; esac
  m=$reg/$model
  in=$reg/$input
  rm -rf "$tmp"/out*
  case $kind in
    inspect) cmd=("$relprop" inspect --onnx "$m") ;;
    run) cmd=("$relprop" run --onnx "$m" --input "$in" -o "$tmp/out.npy") ;;
    explain)
      cmd=("$relprop" explain --onnx "$m" --image "$in" -o "$tmp/out") ;;
    *) ko "cases.tsv: unknown kind '$kind' ($model)"; continue ;;
  esac
  timeout 300 "${cmd[@]}" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  label="$kind $model${input:+ $input} ($what)"
  [ "$input" = - ] && label="$kind $model ($what)"
  if [ $known_bug = 1 ]; then
    # A reported bug in someone else's file: not counted against the test.
    if [ $rc -eq 2 ] && grep -qiE -e "$pattern" "$tmp/stderr" && ! sanitizer_report "$tmp/stderr" \
       && ! ls "$tmp"/out* >/dev/null 2>&1; then
      echo "XPASS: $label: fixed; make it a normal case in tools/make_regressions.py"
    else
      echo "XFAIL: $label: exit $rc"
    fi
    xfail=$((xfail + 1)); continue
  fi
  if sanitizer_report "$tmp/stderr"; then ko "$label: sanitizer report: $(grep -m3 -E 'Sanitizer|runtime error' "$tmp/stderr")"; continue; fi
  if [ $rc -ne 2 ] && ! { [ $may_pass = 1 ] && [ $rc -eq 0 ]; }; then
    ko "$label: exit $rc, expected 2: $(head -c 300 "$tmp/stderr")"; continue
  fi
  if [ $rc -eq 2 ] && ! grep -qiE -e "$pattern" "$tmp/stderr"; then
    ko "$label: message '$(head -c 400 "$tmp/stderr")' does not match /$pattern/"; continue
  fi
  if [ $rc -eq 2 ] && ls "$tmp"/out* >/dev/null 2>&1; then
    ko "$label: left output behind: $(ls -R "$tmp"/out* | head -5)"; continue
  fi
  # Whatever was written lives in $tmp/out*; nothing else may appear.
  if [ "$(ls -A "$tmp" | grep -v -E '^(stdout|stderr|out.*)$')" != "" ]; then
    ko "$label: stray files: $(ls -A "$tmp")"; continue
  fi
  passed=$((passed + 1))
done <"$reg/cases.tsv"

# External data far past the ceiling, in a sparse file (18 GB that take no
# disk): refused before any allocation, naming the tensor.
mkdir -p "$tmp/sparse"
cp "$reg/external/huge_sparse.onnx" "$tmp/sparse/model.onnx"
if truncate -s $((18 << 30)) "$tmp/sparse/huge_sparse.bin" 2>/dev/null; then
  timeout 120 "$relprop" inspect --onnx "$tmp/sparse/model.onnx" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  if [ $rc -eq 2 ] && grep -qE "'W'.*limit" "$tmp/stderr" && ! sanitizer_report "$tmp/stderr"; then passed=$((passed + 1))
  else ko "external data of 18 GB (sparse file): exit $rc: $(head -c 300 "$tmp/stderr")"; fi
fi
rm -rf "$tmp/sparse"

echo "test_regressions: $passed passed, $failed failed, $xfail known bugs (bug- cases)"
[ $failed -eq 0 ] && [ $passed -gt 100 ]
