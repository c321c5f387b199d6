#!/usr/bin/env bash
# Build the libFuzzer targets: the library sources compiled with clang,
# -fsanitize=fuzzer-no-link,address,undefined, linked into fuzz_model and
# fuzz_readers.   fuzz/build.sh [BUILD_DIR]   (default: build-fuzz)
# Needs clang and libclang-rt-14-dev (libFuzzer), protoc-c, and the
# library's usual -dev packages. Incremental: a source is recompiled when it
# or any header under src/ include/ is newer than its object.
# Images decode through Debian's prebuilt libjpeg-turbo and libpng (not
# instrumented: ASan sees relprop's side of every call, valgrind the
# libraries' own, tests/valgrind.sh) and relprop's own BMP and PPM readers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-fuzz}
case $out in /*) ;; *) out=$PWD/$out ;; esac
CC=${CC:-clang}
JOBS=${JOBS:-2}
mkdir -p "$out/obj" "$out/proto"

if ! command -v "$CC" >/dev/null; then echo "fuzz/build.sh: $CC not found (apt-get install clang)" >&2; exit 1; fi
fuzzer_lib=$("$CC" -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
if [ ! -f "$fuzzer_lib" ] && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz/build.sh: libFuzzer not found (apt-get install libclang-rt-14-dev)" >&2; exit 1
fi

proto=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
if [ ! -f "$out/proto/onnx.pb-c.c" ] || [ "$proto" -nt "$out/proto/onnx.pb-c.c" ]; then
  protoc-c --c_out="$out/proto" -I"$(dirname "$proto")" "$proto"
fi

pkgs="libprotobuf-c openblas stb libcjson libjpeg libpng"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# Out-of-range float -> integer conversions (Cast/CastLike/Pow on inf, NaN
# or 1e30; reproducers in tests/regressions/fuzz/model/) are checked: the
# library saturates them (src/core/convert.h). FUZZ_STRICT=0 exempts them.
[ "${FUZZ_STRICT:-1}" = 1 ] || SAN="$SAN -fno-sanitize=float-cast-overflow"
CFLAGS="-std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -DRELPROP_FUZZING $SAN -fsanitize=fuzzer-no-link
  -I$root/include -I$root/src -I$out/proto $(pkg-config --cflags $pkgs)"
LIBS="$(pkg-config --libs $pkgs) -lm -ldl"

newest_header=$(find "$root/src" "$root/include" -name '*.h' -printf '%T@\n' | sort -n | tail -1)
# Changed flags (FUZZ_STRICT, a new compiler) rebuild everything.
flags_id=$(echo "$CC $CFLAGS $("$CC" --version | head -1)" | cksum | cut -d' ' -f1)
if [ "$(cat "$out/flags" 2>/dev/null)" != "$flags_id" ]; then rm -f "$out"/obj/*.o; echo "$flags_id" >"$out/flags"; fi
srcs=$(ls "$root"/src/{core,graph,ops,rules,methods,image}/*.c)
todo=()
objs=()
for s in $srcs "$out/proto/onnx.pb-c.c"; do
  rel=${s#$root/}; rel=${rel#$out/}
  o="$out/obj/$(echo "$rel" | tr / _).o"
  objs+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || \
     awk -v h="$newest_header" -v t="$(stat -c %Y "$o")" 'BEGIN{exit !(h > t)}'; then
    todo+=("$s|$o")
  fi
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "fuzz/build.sh: compiling ${#todo[@]} sources"
  printf '%s\n' "${todo[@]}" | xargs -P "$JOBS" -I{} sh -c \
    's="${1%|*}"; o="${1#*|}"; w=""; case "$s" in *onnx.pb-c.c) w=-w;; esac; '"$CC"' '"$(echo $CFLAGS)"' $w -c "$s" -o "$o"' _ {}
fi
rm -f "$out/librelprop_fuzz.a"
ar rcs "$out/librelprop_fuzz.a" "${objs[@]}"

for t in fuzz_model fuzz_readers; do
  "$CC" $CFLAGS -fsanitize=fuzzer "$root/fuzz/$t.c" "$out/librelprop_fuzz.a" $LIBS -o "$out/$t"
done
# fuzz_ops: structure-aware graphs fed through fuzz_model's code.
"$CC" $CFLAGS -fsanitize=fuzzer -DFUZZ_MODEL_NO_ENTRY "$root/fuzz/fuzz_ops.c" "$root/fuzz/fuzz_model.c" \
  "$out/librelprop_fuzz.a" $LIBS -o "$out/fuzz_ops"
echo "fuzz/build.sh: built $out/fuzz_model $out/fuzz_readers $out/fuzz_ops"
