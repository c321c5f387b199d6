#!/usr/bin/env bash
# Build the fuzz targets and run each for SECONDS on the seed corpus.
#   fuzz/run.sh [SECONDS] [TARGET...]     (default 60 s; targets fuzz_model fuzz_readers fuzz_ops)
# Environment: FUZZ_BUILD (build dir, default build-fuzz), FUZZ_PARALLEL=1 to
# run the targets side by side instead of one after the other, FUZZ_NICE
# (default 19: fuzzers use idle CPU only), FUZZ_RSS_MB (default 2048),
# FUZZ_FORK (parallel jobs per target, default 1).
# Findings are copied to fuzz/crashes/<target>/; the growing corpus is kept
# in $FUZZ_BUILD/corpus/<target> between runs; each run's log and figures
# are in $FUZZ_BUILD/logs/<target>.log. Exit status 1 if anything was found.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_model fuzz_readers fuzz_ops)
out=${FUZZ_BUILD:-$root/build-fuzz}
nice_level=${FUZZ_NICE:-19}
rss=${FUZZ_RSS_MB:-2048}

nice -n "$nice_level" bash "$root/fuzz/build.sh" "$out" || exit 2

# ---- seeds ----
seeds() {
  local t=$1 dir=$out/seeds/$t
  rm -rf "$dir"; mkdir -p "$dir"
  case $t in
  fuzz_model)
    # The oracle ViTs, the exported variants, the loader/CLI fixtures, the
    # regression corpus (not the known, unfixed crashers in fuzz/pending/),
    # and a sample (every 4th) of the ONNX node tests.
    local i=0
    for f in "$root"/tests/oracle/*/model.onnx "$root"/tests/variants/*/model.onnx \
             $(find "$root/tests/data" "$root/tests/regressions" -name '*.onnx' -not -path '*/pending/*' 2>/dev/null); do
      [ -f "$f" ] && cp "$f" "$dir/seed_$((i++)).onnx"
    done
    local k=0
    for f in "$root"/tests/onnx-node-tests/*/model.onnx; do
      [ $((k++ % 4)) -eq 0 ] && cp "$f" "$dir/seed_$((i++)).onnx"
    done
    ;;
  fuzz_readers)
    # One selector byte, then the file (see fuzz_readers.c).
    local i=0 f
    while IFS= read -r f; do
      { printf '\000'; cat "$f"; } >"$dir/npy_$i"; { printf '\003'; cat "$f"; } >"$dir/npyf_$i"; i=$((i + 1))
    done < <(find "$root/tests/data" "$root/tests/oracle" "$root/tests/regressions" -name '*.npy' -size -256k 2>/dev/null | sort | awk 'NR % 3 == 1')
    while IFS= read -r f; do
      { printf '\001'; cat "$f"; } >"$dir/img_$i"; i=$((i + 1))
    done < <(find "$root/tests/data" "$root/samples" "$root/tests/regressions" -type f \
               \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' -o -iname '*.ppm' \
                  -o -iname '*.pgm' -o -iname '*.gif' \) ! -name 'many_scans_work.jpg' -size -512k 2>/dev/null)
    while IFS= read -r f; do
      { printf '\002'; cat "$f"; } >"$dir/pb_$i"; i=$((i + 1))
    done < <(find "$root/tests/onnx-node-tests" -name '*.pb' -size -64k | sort | awk 'NR % 8 == 1')
    ;;
  fuzz_ops)
    # Graph recipes, not files: a few fixed byte strings to start from.
    local k
    for k in 0 1 2 3 4 5 6 7; do
      printf 'recipe-%d-%058d' "$k" "$((k * 7919))" >"$dir/recipe_$k"
    done
    ;;
  esac
}

run_one() {
  local t=$1 corpus=$out/corpus/$t crashes=$root/fuzz/crashes/$t log=$out/logs/$t.log
  mkdir -p "$corpus" "$crashes" "$out/logs" "$out/artifacts/$t"
  seeds "$t"
  local maxlen=4096
  [ "$t" = fuzz_model ] && maxlen=2200000
  [ "$t" = fuzz_ops ] && maxlen=512
  local dict=()
  [ "$t" = fuzz_model ] && dict=(-dict="$root/fuzz/onnx.dict")
  echo "fuzz/run.sh: $t for ${secs}s (log $log)"
  # Fork mode keeps going after a crash, leak, OOM or timeout and saves
  # each input under -artifact_prefix. ASan returns NULL (as malloc would)
  # for a single allocation above 1 GiB instead of aborting, so the
  # library's own refusals and out-of-memory paths are what get tested.
  ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  nice -n "$nice_level" "$out/$t" "$corpus" "$out/seeds/$t" \
      -fork="${FUZZ_FORK:-1}" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 "${dict[@]}" \
      -max_total_time="$secs" -timeout=30 -rss_limit_mb="$rss" -max_len=$maxlen \
      -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
  local found=0 a
  for a in "$out/artifacts/$t"/*; do
    [ -f "$a" ] || continue
    cp -n "$a" "$crashes/" && found=$((found + 1))
    rm -f "$a"
  done
  # The last status line: executions, coverage (cov), features (ft), corpus size.
  echo "fuzz/run.sh: $t: $(grep -E '#[0-9]+' "$log" | tail -1)"
  echo "fuzz/run.sh: $t: $found new finding(s) in fuzz/crashes/$t/"
  [ "$found" -eq 0 ]
}

status=0
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
  pids=()
  for t in "${targets[@]}"; do run_one "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
else
  for t in "${targets[@]}"; do run_one "$t" || status=1; done
fi
exit $status
