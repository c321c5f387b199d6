#!/usr/bin/env bash
# Hostile outputs, inputs and interruptions (issue #18): relprop never
# writes through a link or over a device, leaves per input its complete
# results or nothing (and never a temporary), refuses FIFOs, devices and
# oversized files by kind and size without blocking, checks what concerns
# the whole run once before the first input, names where a bad value came
# from, and escapes what it prints and writes.
#   test_hostile.sh RELPROP_BINARY SOURCE_DIR
set -u
shopt -s nullglob
relprop=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
bad=$src/tests/data/bad
oracle=$src/tests/oracle/fmnist_vit_s__timm17
model=$oracle/model.onnx
x0=$oracle/inputs/input_0.npy
x1=$oracle/inputs/input_1.npy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
passed=0
failed=0
ok() { passed=$((passed + 1)); }
ko() { failed=$((failed + 1)); echo "FAIL: $*"; }

# run_cmd CMD...: runs with a time limit (nothing here may block), into stdout/stderr files; sets rc.
run_cmd() {
  timeout 120 "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
}
# expect_fail NAME PATTERN CMD...: exit 2 and one line on stderr matching PATTERN.
expect_fail() {
  local name=$1 pattern=$2
  shift 2
  run_cmd "$@"
  if [ $rc -ne 2 ]; then ko "$name: exit $rc, expected 2 ($(head -c 300 "$tmp/stderr"))"; return 1; fi
  if ! grep -qE -e "$pattern" "$tmp/stderr"; then ko "$name: stderr '$(head -c 400 "$tmp/stderr")' does not match /$pattern/"; return 1; fi
  if [ "$(wc -l <"$tmp/stderr")" -ne 1 ]; then ko "$name: expected one line on stderr: $(head -c 600 "$tmp/stderr")"; return 1; fi
  ok
}
# no_temporaries DIR...: neither the writer's temporaries nor staging folders are left.
no_temporaries() {
  local left
  left=$(find "$@" -name '.rp-tmp-*' -o -name '.relprop-staging-*' -o -name '*.tmp.*' 2>/dev/null)
  [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}
# complete_or_absent DIR N_PER_INPUT: every stem in DIR has exactly N files, its JSON among them.
complete_or_absent() {
  local dir=$1 n=$2 stem count
  for stem in $(ls "$dir" | sed 's/\..*//' | sort -u); do
    count=$(ls "$dir" | grep -c "^$stem\.")
    [ "$count" -eq "$n" ] && [ -f "$dir/$stem.json" ] || { echo "$stem: $count files"; return 1; }
  done
}

# --- writes through links and over devices ---
# A device node of our own (never the real /dev/null: a relprop with this bug would replace it).
if mknod nulldev c 1 3 2>/dev/null; then
  expect_fail "-o DEVICE --force" "nulldev exists and is not a regular file" \
    "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o nulldev --force \
    && { [ -c nulldev ] || ko "the device node was replaced by a file"; }
fi
echo keep >victim
ln -s "$tmp/victim" link.npy
expect_fail "symlink at -o" "link.npy exists and is not a regular file" \
  "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o link.npy --force \
  && { [ "$(cat victim)" = keep ] && [ -L link.npy ] || ko "symlink at -o: victim changed"; }
# A symlink planted at one of an input's result names: that input writes nothing, the target is untouched.
mkdir planted
ln -s "$tmp/victim" planted/input_0.c6.transformer_attribution.overlay.png
run_cmd "$relprop" explain --onnx "$model" --input "$x0" --class 6 -o planted --force
[ $rc -eq 2 ] && grep -q "not a regular file" "$tmp/stderr" && [ "$(cat victim)" = keep ] \
  && [ "$(ls planted | wc -l)" -eq 1 ] && no_temporaries planted && ok || ko "planted symlink: rc $rc, $(ls -a planted)"
mkdir -p dirs/x.json
expect_fail "directory at the JSON's name" "x.json exists and is not a regular file" \
  "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" -o dirs/x.json --force
# A good run leaves no temporaries, and the files have the usual permissions (0666 less the umask).
run_cmd "$relprop" explain --onnx "$model" --input "$x0" --class 6 --dump-intermediates good/inter -o good
[ $rc -eq 0 ] && no_temporaries good && [ "$(stat -c %a good/input_0.json)" = "$(printf '%o' $((0666 & ~$(umask))))" ] \
  && ok || ko "good run: rc $rc, $(ls -a good) $(cat "$tmp/stderr")"

# --- all or nothing per input ---
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  /usr/bin/python3 -c "
import numpy as np, sys
x = np.load(sys.argv[1]); x[0, 0, 0, 0] = np.nan; np.save('nan.npy', x)" "$x0"
  # The map is finite, the input is not: rendering the overlay fails after the map is written.
  run_cmd "$relprop" explain --onnx "$model" --input nan.npy "$x1" --no-check-finite --method all -o partial
  [ $rc -eq 2 ] && grep -q "nan.npy: render" "$tmp/stderr" && [ -z "$(ls partial | grep '^nan\.')" ] \
    && [ -f partial/input_1.json ] && complete_or_absent partial 22 && no_temporaries partial \
    && ok || ko "failure at render: rc $rc, $(ls partial) $(cat "$tmp/stderr")"
fi
# Disk full (a file size limit: writes fail with EFBIG): nothing is left, not even the folder.
( trap '' XFSZ; ulimit -f 2; exec "$relprop" explain --onnx "$model" --input "$x0" "$x1" --method all -o full ) \
  >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ $rc -eq 2 ] && grep -q "full/input_0.*File too large" "$tmp/stderr" && [ ! -e full ] \
  && ok || ko "disk full: rc $rc, $(ls -a full 2>&1) $(cat "$tmp/stderr")"
# A name the file system cannot hold: refused before that input writes anything; the other completes.
long=$(printf 'a%.0s' $(seq 1 230))
cp "$x0" "$long.npy"
run_cmd "$relprop" explain --onnx "$model" --input "$long.npy" "$x1" -o longname
[ $rc -eq 2 ] && grep -q "longer than the 255 the file system takes" "$tmp/stderr" && [ -f longname/input_1.json ] \
  && [ "$(ls longname | wc -l)" -eq 4 ] && no_temporaries longname && ok || ko "long name: rc $rc, $(cat "$tmp/stderr")"
# Two inputs with one stem: refused before anything is written.
mkdir -p d1 d2 && cp "$x0" d1/x.npy && cp "$x1" d2/x.npy
expect_fail "same stem twice" "inputs 'd1/x.npy' and 'd2/x.npy' would both write results named 'x\.\*'" \
  "$relprop" explain --onnx "$model" --input d1/x.npy d2/x.npy -o stems --force \
  && { [ ! -e stems ] || ko "same stem: output folder made"; }
# A second writer: the folder is locked for the run.
mkdir locked
exec 9<locked
flock 9
expect_fail "locked folder" "locked: another relprop process is writing into this folder" \
  "$relprop" explain --onnx "$model" --input "$x0" -o locked && { [ -z "$(ls -A locked)" ] || ko "locked: wrote"; }
exec 9<&-
# SIGINT and SIGTERM mid-run: exit by the signal, every input complete or absent, no temporaries.
mkdir many
for i in $(seq 1 30); do cp "$x0" "many/in$i.npy"; done
(cd many && ls in*.npy) >many/list.txt
for sig in INT TERM; do
  "$relprop" explain --onnx "$model" --list many/list.txt --method all --panel -o "stop_$sig" >/dev/null 2>"$tmp/stderr" &
  pid=$!
  for _ in $(seq 1 100); do [ -n "$(ls "stop_$sig" 2>/dev/null | grep json)" ] && break; sleep 0.1; done
  kill -$sig $pid
  wait $pid
  rc=$?
  want=$((128 + $(kill -l $sig)))
  [ $rc -eq $want ] && grep -q "stopped by signal" "$tmp/stderr" && complete_or_absent "stop_$sig" 23 \
    && no_temporaries "stop_$sig" && [ "$(ls "stop_$sig" | grep -c json)" -lt 30 ] \
    && ok || ko "SIG$sig: rc $rc (want $want), $(ls "stop_$sig" | grep -c json) inputs, $(cat "$tmp/stderr")"
done
# --dump-intermediates follows --force like the results.
expect_fail "dump overwrite" "input_0.c6.attn_0.npy exists; pass --force" \
  "$relprop" explain --onnx "$model" --input "$x0" --class 6 --dump-intermediates good/inter -o good2
[ ! -e good2 ] && ok || ko "dump overwrite: made good2"

# --- eval: the run is one unit, dumps and hits.csv follow --force ---
evl=$src/tests/data/eval/LIST.csv
run_cmd "$relprop" eval --onnx "$model" --data "$evl" --limit 1 --method raw_attention -o ev --dump ev/dump
[ $rc -eq 0 ] && [ -s ev/dump/hits.csv ] && [ -s ev/results.json ] && no_temporaries ev && ok || ko "eval --dump: rc $rc, $(cat "$tmp/stderr")"
cp ev/dump/hits.csv hits.before
rm ev/results.csv ev/results.json ev/perturbation.svg ev/perturbation.png
expect_fail "eval hits.csv overwrite" "hits.csv exists; pass --force|pixmap.npy exists; pass --force" \
  "$relprop" eval --onnx "$model" --data "$evl" --limit 1 --method raw_attention -o ev --dump ev/dump \
  && { cmp -s hits.before ev/dump/hits.csv && [ ! -e ev/results.json ] || ko "eval --dump overwrite"; }

# --- bounded inputs: kind and size before a byte is read ---
mkfifo fifo
expect_fail "--list FIFO" "fifo: the list file is a FIFO" "$relprop" explain --onnx "$model" --list fifo -o out_f
expect_fail "--list /dev/zero" "/dev/zero: the list file is a character device" "$relprop" explain --onnx "$model" --list /dev/zero -o out_f
expect_fail "--labels /dev/zero" "/dev/zero: the labels file is a character device" "$relprop" explain --onnx "$model" --input "$x0" --labels /dev/zero -o out_f
expect_fail "--labels FIFO" "the labels file is a FIFO" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input "$bad/x_ok.npy" --labels fifo
expect_fail "--rules FIFO" "the rule set file is a FIFO" "$relprop" explain --onnx "$model" --input "$x0" --rules ./fifo -o out_f
expect_fail "--data FIFO" "the list file is a FIFO" "$relprop" eval --onnx "$model" --data fifo -o out_f
expect_fail "--input FIFO" "the .npy file is a FIFO" "$relprop" run --onnx "$bad/tiny_ok.onnx" --input fifo
run_cmd "$relprop" explain --onnx "$model" --image fifo -o out_f
[ $rc -eq 2 ] && grep -q "the image is a FIFO" "$tmp/stderr" && ok || ko "--image FIFO: rc $rc $(cat "$tmp/stderr")"
truncate -s 3G sparse.onnx
expect_fail "3 GB sparse model" "sparse.onnx: 3221225472 bytes, larger than 2 GiB" "$relprop" run --onnx sparse.onnx --input "$bad/x_ok.npy"
expect_fail "model larger than --max-memory" "the model file has [0-9]+ bytes, more than --max-memory" \
  "$relprop" inspect --onnx "$model" --max-memory 1M
[ ! -e out_f ] && ok || ko "a refused input left out_f"

# Model metadata under the limits of flags, preprocessing counted in --max-memory. The
# entries are appended to the model as protobuf fields (ModelProto.metadata_props = 14).
with_metadata() { # IN OUT KEY=VALUE...
  /usr/bin/python3 - "$@" <<'PY'
import sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data
src, dst, *pairs = sys.argv[1:]
data = open(src, "rb").read()
for p in pairs:
    k, v = p.split("=", 1)
    data += field(14, field(1, k.encode()) + field(2, v.encode()))
open(dst, "wb").write(data)
PY
}
if with_metadata "$model" huge_resize.onnx relprop.resize=40000 relprop.crop=64 2>/dev/null; then
  expect_fail "metadata resize 40000" "relprop.resize='40000'.*preprocessing would take [0-9.]+ MiB.*more than the 1024.0 MiB" \
    "$relprop" explain --onnx huge_resize.onnx --image "$bad/ok.png" "$src/samples/"*.png -o out_m
  with_metadata "$model" neg_std.onnx relprop.resize=64,64 relprop.std=-1,-1,-1
  expect_fail "metadata std -1" "neg_std.onnx: model metadata relprop.std='-1,-1,-1': std values must be positive" \
    "$relprop" explain --onnx neg_std.onnx --image "$bad/ok.png" -o out_m \
    && { ! grep -q -- "--std" "$tmp/stderr" || ko "std from metadata names --std"; }
  # A flag's resize is under the same limit.
  expect_fail "--resize 40000" "--resize 40000.*preprocessing would take" \
    "$relprop" explain --onnx "$model" --image "$bad/ok.png" --resize 40000 --crop 64 -o out_m
fi

# External data naming a FIFO: refused by kind, without blocking.
mkdir ext && cp "$src/tests/data/external/model.onnx" ext/ && mkfifo ext/weights.bin
expect_fail "external data FIFO" "external data file '.*weights.bin' is not a regular file" "$relprop" inspect --onnx ext/model.onnx
# Malformed attributes, refused naming the node: one given twice, and 100 000 of them. The
# models are written here as protobuf (ModelProto: a Softmax over x (1, 3)).
make_softmax() { # OUT N_AXIS_ATTRIBUTES N_UNKNOWN_ATTRIBUTES [NODE_NAME OP_TYPE]
  /usr/bin/python3 - "$@" <<'PY'
import struct, sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def f_len(num, data): return varint(num << 3 | 2) + varint(len(data)) + data
def f_int(num, v): return varint(num << 3) + varint(v)
def s(x): return x.encode()
out, n_axis, n_unknown = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
name, op = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("sm", "Softmax")
attrs = b"".join(f_len(5, f_len(1, s("axis")) + f_int(3, 1) + f_int(20, 2)) for _ in range(n_axis))
attrs += b"".join(f_len(5, f_len(1, s("junk%d" % k)) + f_int(3, k) + f_int(20, 2)) for k in range(n_unknown))
node = f_len(1, s("x")) + f_len(2, s("y")) + f_len(3, s(name)) + f_len(4, s(op)) + attrs
shape = f_len(2, f_len(1, f_int(1, 1)) + f_len(1, f_int(1, 3)))
vtype = f_len(2, f_len(1, f_int(1, 1) + shape))
graph = f_len(1, node) + f_len(2, s("g")) + f_len(11, f_len(1, s("x")) + vtype) + f_len(12, f_len(1, s("y")) + vtype)
model = f_int(1, 8) + f_len(8, f_len(1, b"") + f_int(2, 13)) + f_len(7, graph)
open(out, "wb").write(model)
PY
}
make_softmax softmax_ok.onnx 1 0 && make_softmax softmax_twice.onnx 2 0 && make_softmax softmax_junk.onnx 0 100000
run_cmd "$relprop" inspect --onnx softmax_ok.onnx
[ $rc -eq 0 ] && ok || ko "the well-formed Softmax model: rc $rc, $(cat "$tmp/stderr")"
expect_fail "attribute given twice" "node 'sm' \(Softmax\): attribute 'axis' is given twice" "$relprop" inspect --onnx softmax_twice.onnx
expect_fail "100 000 attributes" "node 'sm' \(Softmax\): 100000 attributes" "$relprop" inspect --onnx softmax_junk.onnx
# A node name with control characters, printed by inspect and in the error: escaped.
make_softmax ctl_name.onnx 1 0 $'evil\033[2J\nname' Hardmax
run_cmd "$relprop" inspect --onnx ctl_name.onnx
[ $rc -eq 2 ] && ! grep -q $'\033' "$tmp/stdout" "$tmp/stderr" && grep -qF "node 'evil\\x1b[2J\\x0aname': Hardmax" "$tmp/stdout" \
  && [ "$(wc -l <"$tmp/stderr")" -eq 1 ] && ok || ko "control characters in a node name: rc $rc, $(cat -v "$tmp/stdout" "$tmp/stderr")"

# --- --shard: ranges checked, no overflow ---
expect_fail "--shard huge" "--shard must be K/N" "$relprop" explain --onnx "$model" --input "$x0" --shard 9223372036854775807/9223372036854775807 -o out_s
expect_fail "--shard N too large" "--shard must be K/N" "$relprop" explain --onnx "$model" --input "$x0" --shard 1/99999999999999999999 -o out_s
expect_fail "--shard negative" "--shard must be K/N" "$relprop" explain --onnx "$model" --input "$x0" --shard -1/3 -o out_s
run_cmd "$relprop" explain --onnx "$model" --input "$x0" "$x1" --shard 0/2147483647 -o out_s
[ $rc -eq 0 ] && [ ! -e out_s ] && ok || ko "an empty shard: rc $rc, $(cat "$tmp/stderr")"
run_cmd "$relprop" explain --onnx "$model" --input "$x0" "$x1" --shard 2147483646/2147483647 -o out_s
[ $rc -eq 0 ] && [ "$(ls out_s/*.json)" = out_s/input_1.json ] && ok || ko "the last shard: rc $rc, $(ls out_s)"

# --- run-level checks: once, before the first input ---
expect_fail "--class out of range, once" "^relprop: --class 12 out of range: the model has 10 classes \(0\.\.9\)$" \
  "$relprop" explain --onnx "$model" --input "$x0" "$x1" --class 12 -o out_r \
  && { ! grep -q "explained\|rank" "$tmp/stdout" || ko "--class: $(cat "$tmp/stdout")"; }
expect_fail "--start-layer out of range" "--start-layer 9 out of range: the model has 4 attention layers" \
  "$relprop" explain --onnx "$model" --input "$x0" "$x1" --start-layer 9 -o out_r
expect_fail "--mean nan" "--mean must be three comma-separated finite numbers, got 'nan,0,0'" \
  "$relprop" explain --onnx "$model" --image "$bad/ok.png" --mean nan,0,0 -o out_r
echo '{"base": "paper", "rules": [{"kind": "linear", "rule": "no_such_rule"}]}' >bad_rules.json
expect_fail "--rules file, once" "--rules bad_rules.json: .*no_such_rule" \
  "$relprop" explain --onnx "$model" --input "$x0" "$x1" -o out_r --rules bad_rules.json
[ ! -e out_r ] && ok || ko "a run-level error made its output folder"

# --- what is printed and written: control characters escaped, JSON valid UTF-8 ---
{ printf 'T-shirt\033[2J\n'; printf 'bad\377byte\n'; for i in 2 3 4 5 6 7 8 9; do echo "class $i"; done; } >labels_ctl.txt
run_cmd "$relprop" explain --onnx "$model" --input "$x0" --class 0 --class 1 --top 10 --labels labels_ctl.txt -o esc
if [ $rc -eq 0 ] && ! grep -q $'\033' "$tmp/stdout" && grep -q 'T-shirt\\x1b\[2J' "$tmp/stdout"; then ok
else ko "labels with control characters: rc $rc, $(cat -v "$tmp/stdout" | head -12)"; fi
/usr/bin/python3 -c "
import json, sys
text = open(sys.argv[1], 'rb').read().decode('utf-8')  # strict: invalid UTF-8 raises
labels = [m['label'] for m in json.loads(text)['maps']]
assert labels == ['T-shirt\x1b[2J', 'bad\\\\xffbyte'], labels
" esc/input_0.json && ok || ko "JSON with control characters and invalid UTF-8 labels"
expect_fail "control characters in a path" 'no\\x0aline\.npy' "$relprop" run --onnx "$bad/tiny_ok.onnx" --input $'no\nline.npy'

echo "hostile: $passed passed, $failed failed"
[ $failed -eq 0 ]
