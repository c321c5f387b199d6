#!/usr/bin/python3
"""Regenerates the malformed-input regression corpus in tests/regressions/
(run by tests/test_regressions.sh). Needs /usr/bin/python3 with the Debian
onnx and numpy packages (made with onnx 1.12, numpy 1.24); the JPEG cases
start from tests/data/jpeg/pil_q75.jpg (tools/make_jpeg_fixtures.py).

    /usr/bin/python3 tools/make_regressions.py

Writes the inputs and tests/regressions/cases.tsv, one case a line:

    KIND <tab> MODEL <tab> INPUT <tab> PATTERN <tab> WHAT

KIND is `inspect` (relprop inspect --onnx MODEL), `run` (relprop run --onnx
MODEL --input INPUT -o OUT) or `explain` (relprop explain --onnx MODEL
--image INPUT -o OUT; skipped while the CLI has no --image). Every case must
exit with status 2, print a message matching PATTERN (grep -E, case
insensitive) and leave no output. A KIND prefixed `any-` may also succeed (a
mutation that still makes a well-formed file): it only must not crash. A KIND
prefixed `bug-` is a known bug in a file outside the fuzzing work, reported
to the lead: it is run and reported as XFAIL (or XPASS once fixed, to be
promoted), and does not fail the test.
Paths are relative to tests/regressions/. Inputs the fuzzers found live in
tests/regressions/fuzz/ and are listed by hand at the end of this script.
Deterministic: the same script gives the same bytes."""
import os
import random
import struct
import zlib

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "regressions")
ORACLE = "../oracle/fmnist_vit_s__timm17/model.onnx"  # relative to OUT
cases = []


def case(kind, model, inp, pattern, what):
    cases.append((kind, model, inp or "-", pattern, what))


def path(*p):
    full = os.path.join(OUT, *p)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return full


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data)
    return name


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def save(m, name):
    return write(name, m.SerializeToString())


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def npy(name, arr):
    with open(path(name), "wb") as f:
        np.save(f, arr)
    return name


# ---- a small good model and its input ----
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
b = np.array([0.1, -0.2, 0.3], dtype=np.float32)
good = model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
              helper.make_node("Add", ["h", "b"], ["logits"], name="add")],
             [vi("x", [1, 4])], [vi("logits", [1, 3])], [const("W", W), const("b", b)])
save(good, "good.onnx")
npy("x_good.npy", np.ones((1, 4), np.float32))
good_bytes = good.SerializeToString()


def parses(data):
    try:
        onnx.ModelProto().ParseFromString(data)
        return True
    except (DecodeError, RuntimeError, ValueError):
        return False


# ---- truncated at several offsets ----
n = len(good_bytes)
for off in sorted({1, 2, 5, 9, 17, n // 4, n // 3, n // 2, 2 * n // 3, 3 * n // 4, n - 9, n - 1}):
    name = write("trunc/good_%d.onnx" % off, good_bytes[:off])
    if not parses(good_bytes[:off]):
        case("inspect", name, None, "not an ONNX model|protobuf|truncated", "truncated at byte %d of %d" % (off, n))
    else:
        case("any-inspect", name, None, ".", "truncated at byte %d of %d (still parses)" % (off, n))
write("trunc/empty.onnx", b"")
case("inspect", "trunc/empty.onnx", None, "empty", "empty model file")

# ---- bit flips (seeded) ----
rng = random.Random(6)
for i in range(24):
    data = bytearray(good_bytes)
    pos = rng.randrange(len(data))
    data[pos] ^= 1 << rng.randrange(8)
    name = write("flip/good_flip%02d_%d.onnx" % (i, pos), bytes(data))
    if not parses(bytes(data)):
        case("inspect", name, None, "not an ONNX model|protobuf", "bit flip at byte %d (no longer protobuf)" % pos)
    else:
        case("any-run", name, "x_good.npy", ".", "bit flip at byte %d (still protobuf)" % pos)

# ---- huge dims ----
def raw_init(name, dims, raw, dt=TensorProto.FLOAT):
    t = TensorProto()
    t.name, t.data_type = name, dt
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def with_W(init, name, pattern, what, kind="inspect", **kw):
    m = model([helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")], [vi("x", [1, 4])],
              [vi("logits", [1, 3])], [init])
    case(kind, save(m, name), kw.get("inp"), pattern, what)


with_W(raw_init("W", [1 << 40, 3], W.tobytes()), "huge/init_2pow40.onnx", "'W'.*(raw_data|too large)",
       "initializer declaring 2^40 x 3 floats with 48 bytes of data")
with_W(raw_init("W", [1 << 62, 1 << 62], W.tobytes()), "huge/init_overflow.onnx", "'W'.*(overflow|too large)",
       "initializer whose element count overflows int64")
with_W(raw_init("W", [(1 << 61) + 1, 8], W.tobytes()), "huge/init_bytes_overflow.onnx", "'W'.*(overflow|too large)",
       "initializer whose byte size overflows (2^61+1 x 8 floats)")
t = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], W.flatten().tolist())
t.dims[0] = 1 << 50
with_W(t, "huge/init_typed_huge.onnx", "'W'.*(float_data|too large)", "typed initializer declaring 2^50 x 3 floats")

m = model([helper.make_node("Relu", ["x"], ["logits"], name="relu")], [vi("x", [1, 3, 100000, 100000])],
          [vi("logits", [1, 3, 100000, 100000])])
case("inspect", save(m, "huge/input_1e10.onnx"), None, "memory limit|too large",
     "graph input of 3e10 floats (120 GB)")
m = model([helper.make_node("Relu", ["x"], ["logits"], name="relu")], [vi("x", [1 << 31, 1 << 31, 1 << 31])],
          [vi("logits", [1, 3])])
case("inspect", save(m, "huge/input_overflow.onnx"), None, "'x'.*(overflow|too large|memory limit)",
     "graph input whose element count overflows")


def op_model(nodes, inits, name, pattern, what, x_shape=(1, 4), out_shape=None):
    m = model(nodes, [vi("x", list(x_shape))], [vi("logits", out_shape)], inits)
    case("inspect", save(m, name), None, pattern, what)


i64 = lambda v: np.array(v, dtype=np.int64)
op_model([helper.make_node("Expand", ["x", "s"], ["logits"], name="expand_huge")], [const("s", i64([1000000, 1000000, 4]))],
         "huge/expand.onnx", "expand_huge.*(memory limit|too large)", "Expand to 1e6 x 1e6 x 4")
op_model([helper.make_node("Tile", ["x", "r"], ["logits"], name="tile_huge")], [const("r", i64([1 << 20, 1 << 20]))],
         "huge/tile.onnx", "tile_huge.*(memory limit|too large|unsupported)", "Tile by 2^20 x 2^20")
op_model([helper.make_node("Tile", ["x", "r"], ["logits"], name="tile_overflow")], [const("r", i64([1 << 62, 1 << 62]))],
         "huge/tile_overflow.onnx", "tile_overflow.*(overflow|too large|memory limit|out of range|unsupported)", "Tile whose output count overflows")
op_model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos_huge",
                           value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
          helper.make_node("Mul", ["x", "c"], ["logits"], name="mul")],
         [const("s", i64([100000, 100000, 4]))], "huge/constantofshape.onnx", "cos_huge.*(memory limit|too large)",
         "ConstantOfShape of 4e10 floats")
op_model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos_overflow"),
          helper.make_node("Mul", ["x", "c"], ["logits"], name="mul")],
         [const("s", i64([1 << 40, 1 << 40, 4]))], "huge/constantofshape_overflow.onnx",
         "cos_overflow.*(overflow|too large|memory limit|out of range)", "ConstantOfShape whose count overflows")
op_model([helper.make_node("Range", ["a", "l", "d"], ["r"], name="range_huge"),
          helper.make_node("Mul", ["x", "r"], ["logits"], name="mul")],
         [const("a", np.float32(0)), const("l", np.float32(1e12)), const("d", np.float32(1))], "huge/range.onnx",
         "range_huge.*(memory limit|too large)", "Range(0, 1e12, 1)")
op_model([helper.make_node("Range", ["a", "l", "d"], ["r"], name="range_i64"),
          helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT, name="cast"),
          helper.make_node("Mul", ["x", "rf"], ["logits"], name="mul")],
         [const("a", i64(-(1 << 62))), const("l", i64((1 << 62))), const("d", i64(1))], "huge/range_overflow.onnx",
         "range_i64.*(overflow|too large|memory limit|out of range)", "int64 Range over 2^63 elements")
op_model([helper.make_node("Reshape", ["x", "s"], ["logits"], name="reshape_huge")], [const("s", i64([1 << 40, 1 << 40]))],
         "huge/reshape.onnx", "reshape_huge", "Reshape to 2^40 x 2^40 (count mismatch)")
op_model([helper.make_node("Pad", ["x", "p"], ["logits"], name="pad_huge")], [const("p", i64([0, 0, 1 << 20, 1 << 20]))],
         "huge/pad.onnx", "pad_huge.*(memory limit|too large|unsupported)", "Pad by 2^20 on both dims")
op_model([helper.make_node("Pad", ["x", "p"], ["logits"], name="pad_overflow")], [const("p", i64([0, 0, 1 << 62, 1 << 62]))],
         "huge/pad_overflow.onnx", "pad_overflow", "Pad by 2^62 (dims overflow)")
op_model([helper.make_node("Resize", ["x", "", "sc"], ["logits"], name="resize_huge")],
         [const("sc", np.array([1e6, 1e6], np.float32))], "huge/resize.onnx", "resize_huge",
         "Resize by 1e6 x 1e6")
op_model([helper.make_node("Concat", ["x"] * 8, ["c"], name="concat", axis=1)] +
         [helper.make_node("Expand", ["c", "s"], ["logits"], name="expand_mid")],
         [const("s", i64([60000, 60000, 32]))], "huge/expand_mid.onnx", "expand_mid.*(memory limit|too large)",
         "Expand to 1.1e11 floats after a Concat")
# Under the 16 GiB ceiling but not under the default for a 200-byte model:
# the larger of 1 GiB and 64 times the model's size (src/graph/graph.h).
op_model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos_2g",
                           value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
          helper.make_node("ReduceSum", ["c"], ["r"], name="sum", keepdims=0),
          helper.make_node("Add", ["x", "r"], ["logits"], name="add")],
         [const("s", i64([1 << 29]))], "huge/constantofshape_2g.onnx", "cos_2g.*memory limit.*--max-memory",
         "a 200-byte model whose ConstantOfShape makes 2 GiB of floats")

# ---- negative dims ----
with_W(raw_init("W", [-4, 3], W.tobytes()), "neg/init_neg.onnx", "'W'.*negative", "initializer with dim -4")
with_W(raw_init("W", [-4, -3], W.tobytes()), "neg/init_neg2.onnx", "'W'.*negative",
       "initializer with dims -4 x -3 (positive product)")
x_neg = vi("x", [1, 4])
x_neg.type.tensor_type.shape.dim[1].dim_value = -4
m = model([helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")], [x_neg], [vi("logits", [1, 3])],
          [const("W", W)])
case("inspect", save(m, "neg/input_neg.onnx"), None, "'x'.*negative", "graph input with dim -4")
op_model([helper.make_node("Reshape", ["x", "s"], ["logits"], name="reshape_neg")], [const("s", i64([-2, 2]))],
         "neg/reshape.onnx", "reshape_neg", "Reshape to (-2, 2)")
op_model([helper.make_node("Reshape", ["x", "s"], ["logits"], name="reshape_two_minus1")], [const("s", i64([-1, -1]))],
         "neg/reshape_two.onnx", "reshape_two_minus1", "Reshape with two -1")
op_model([helper.make_node("Expand", ["x", "s"], ["logits"], name="expand_neg")], [const("s", i64([-3, 4]))],
         "neg/expand.onnx", "expand_neg", "Expand to (-3, 4)")
op_model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos_neg"),
          helper.make_node("Mul", ["x", "c"], ["logits"], name="mul")], [const("s", i64([-5, 4]))],
         "neg/constantofshape.onnx", "cos_neg", "ConstantOfShape (-5, 4)")
op_model([helper.make_node("Tile", ["x", "r"], ["logits"], name="tile_neg")], [const("r", i64([-1, 2]))],
         "neg/tile.onnx", "tile_neg", "Tile by -1")
op_model([helper.make_node("Pad", ["x", "p"], ["logits"], name="pad_neg")], [const("p", i64([0, -9, 0, 0]))],
         "neg/pad.onnx", "pad_neg", "Pad cropping more than the tensor holds")

# ---- graph structure ----
m = model([helper.make_node("Add", ["x", "b_out"], ["a"], name="add_a"),
           helper.make_node("Relu", ["a"], ["b_out"], name="relu_b"),
           helper.make_node("Identity", ["b_out"], ["logits"], name="id")],
          [vi("x", [1, 4])], [vi("logits", [1, 4])])
case("inspect", save(m, "graph/cycle2.onnx"), None, "cycle", "two-node cycle")
m = model([helper.make_node("Relu", ["y"], ["y"], name="self_loop"),
           helper.make_node("Add", ["x", "y"], ["logits"], name="add")], [vi("x", [1, 4])], [vi("logits", [1, 4])])
case("inspect", save(m, "graph/self_loop.onnx"), None, "cycle|self_loop", "node consuming its own output")
m = model([helper.make_node("Add", ["x", "ghost"], ["logits"], name="add_ghost")], [vi("x", [1, 4])],
          [vi("logits", [1, 4])])
case("inspect", save(m, "graph/undefined_input.onnx"), None, "ghost", "input never produced")
m = model([helper.make_node("Relu", ["x"], ["y"], name="r1"), helper.make_node("Relu", ["x"], ["y"], name="r2"),
           helper.make_node("Identity", ["y"], ["logits"], name="id")], [vi("x", [1, 4])], [vi("logits", [1, 4])])
case("inspect", save(m, "graph/dup_output.onnx"), None, "'y'.*already produced", "two nodes produce 'y'")
m = model([helper.make_node("Relu", ["x"], ["x"], name="r_in")], [vi("x", [1, 4])], [vi("x", [1, 4])])
case("inspect", save(m, "graph/output_is_input.onnx"), None, "'x'.*already a graph input", "node output named as the graph input")
m = model([helper.make_node("Relu", ["x"], ["logits"], name="r")], [vi("x", [1, 4])],
          [vi("logits", [1, 4]), vi("logits", [1, 4])])
case("inspect", save(m, "graph/dup_graph_output.onnx"), None, "'logits'.*twice", "graph output listed twice")
m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [1, 4])], [vi("nowhere", [1, 4])])
case("inspect", save(m, "graph/missing_output.onnx"), None, "nowhere", "graph output not produced")
m = model([helper.make_node("MatMul", ["x", "Wi"], ["logits"], name="mm_dtype")], [vi("x", [1, 4])],
          [vi("logits", [1, 3])], [const("Wi", np.ones((4, 3), np.int64))])
case("inspect", save(m, "graph/dtype_mismatch.onnx"), None, "mm_dtype", "MatMul of float and int64")
m = model([helper.make_node("Relu", ["x"], ["logits"], name="r")], [vi("x", [1, 4])], [vi("logits", [1, 4])], opset=99)
case("inspect", save(m, "graph/opset99.onnx"), None, "opset 99.*newer",
     "opset 99 (newer than any relprop knows: ops may have changed meaning)")
m = model([helper.make_node("Relu", ["x"], ["logits"], name="r")], [vi("x", [1, 4], TensorProto.STRING)],
          [vi("logits", [1, 4])])
case("inspect", save(m, "graph/string_input.onnx"), None, "string", "string graph input")

# Nesting without bound: protobuf-c recurses once per level with no limit.
def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7f, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(tag, payload):
    return bytes([tag]) + varint(len(payload)) + payload


g = b""
for _ in range(20000):  # GraphProto.node -> NodeProto.attribute -> AttributeProto.g -> GraphProto ...
    g = ld(0x0a, ld(0x2a, ld(0x32, g)))
case("inspect", write("graph/nested_graphs_20000.onnx", bytes([0x08, 0x08]) + ld(0x3a, g)), None, "nested",
     "graph attributes nested 20000 deep (234 KB; overflowed the stack in protobuf-c)")
t = ld(0x0a, b"\x08\x01")  # TypeProto.tensor_type {elem_type: FLOAT}
for _ in range(30000):  # TypeProto.sequence_type -> Sequence.elem_type -> TypeProto ...
    t = ld(0x22, ld(0x0a, t))
vi_bytes = ld(0x0a, b"x") + ld(0x12, t)  # ValueInfoProto {name: "x", type: ...}
case("inspect", write("graph/nested_types_30000.onnx", bytes([0x08, 0x08]) + ld(0x3a, ld(0x5a, vi_bytes))), None,
     "nested", "a graph input whose type nests sequences 30000 deep")

# ---- bad external data ----
def ext_model(name, location, offset=None, length=None, dims=(4, 3)):
    t = TensorProto()
    t.name, t.data_type = "W", TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    m = model([helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")], [vi("x", [1, 4])],
              [vi("logits", [1, 3])], [t])
    return save(m, "external/" + name)


write("external/weights.bin", W.tobytes())
case("run", ext_model("ok_but_nan_input.onnx", "weights.bin"), "x_nan.npy", "NaN|finite", "NaN in the input")
case("inspect", ext_model("absolute.onnx", "/etc/passwd"), None, "absolute", "absolute external path")
case("inspect", ext_model("dotdot.onnx", "../good.onnx"), None, "'\\.\\.'|\\.\\.", "external path with ..")
case("inspect", ext_model("dotdot_backslash.onnx", "sub\\..\\..\\good.onnx"), None, "\\.\\.", "external path with ..\\")
case("inspect", ext_model("missing.onnx", "no_such_file.bin"), None, "no_such_file|No such file", "missing external file")
case("inspect", ext_model("folder.onnx", "."), None, "regular file|directory|'W'", "external location is a folder")
case("inspect", ext_model("empty_location.onnx", ""), None, "location", "external data without a location")
case("inspect", ext_model("offset_past_end.onnx", "weights.bin", offset=1 << 40), None, "too short|offset",
     "offset past the end of the file")
case("inspect", ext_model("bad_offset.onnx", "weights.bin", offset="-5"), None, "offset", "negative offset")
case("inspect", ext_model("length_mismatch.onnx", "weights.bin", length=7), None, "length", "length not matching dims")
case("inspect", ext_model("huge_dims.onnx", "weights.bin", dims=(1 << 40, 3)), None, "too short|too large|memory",
     "external tensor of 2^40 x 3 floats in a 48-byte file")
# Used by tests/test_regressions.sh next to a sparse 18 GB huge_sparse.bin it
# makes with truncate: external data past the loader's ceiling (16 GiB).
ext_model("huge_sparse.onnx", "huge_sparse.bin", dims=(9 << 29,))
link = path("external/escape_link.bin")
if os.path.lexists(link):
    os.remove(link)
os.symlink("/etc/hostname", link)
case("inspect", ext_model("symlink_escape.onnx", "escape_link.bin", length=48), None, "outside the model's folder",
     "external file is a symlink to /etc/hostname")

# ---- absurd attribute values ----
x4 = (1, 2, 8, 8)
w_conv = const("cw", np.ones((2, 2, 3, 3), np.float32))
for nm, attrs, what in [
        ("conv_kernel_huge", dict(kernel_shape=[1 << 30, 1 << 30]), "Conv kernel_shape 2^30"),
        ("conv_stride0", dict(strides=[0, 0]), "Conv strides 0"),
        ("conv_stride_neg", dict(strides=[-1, 1]), "Conv negative stride"),
        ("conv_pads_neg", dict(pads=[-5, -5, -5, -5]), "Conv negative pads"),
        ("conv_pads_huge", dict(pads=[1 << 40, 0, 1 << 40, 0]), "Conv pads 2^40"),
        ("conv_dil0", dict(dilations=[0, 0]), "Conv dilations 0"),
        ("conv_group0", dict(group=0), "Conv group 0"),
        ("conv_group3", dict(group=3), "Conv group not dividing channels"),
        ("conv_autopad", dict(auto_pad="BOGUS"), "Conv auto_pad BOGUS")]:
    op_model([helper.make_node("Conv", ["x", "cw"], ["logits"], name=nm, **attrs)], [w_conv], "attr/%s.onnx" % nm,
             nm, what, x_shape=x4)
for nm, op, ins, attrs, inits, what in [
        ("softmax_axis9", "Softmax", ["x"], dict(axis=9), [], "Softmax axis 9"),
        ("softmax_axis_neg", "Softmax", ["x"], dict(axis=-9), [], "Softmax axis -9"),
        ("flatten_axis99", "Flatten", ["x"], dict(axis=99), [], "Flatten axis 99"),
        ("concat_axis50", "Concat", ["x", "x"], dict(axis=50), [], "Concat axis 50"),
        ("transpose_dup", "Transpose", ["x"], dict(perm=[0, 0]), [], "Transpose perm (0, 0)"),
        ("transpose_oob", "Transpose", ["x"], dict(perm=[0, 7]), [], "Transpose perm out of range"),
        ("transpose_short", "Transpose", ["x"], dict(perm=[1]), [], "Transpose perm too short"),
        ("gather_axis9", "Gather", ["x", "gi"], dict(axis=9), [const("gi", i64([0]))], "Gather axis 9"),
        ("gather_index_oob", "Gather", ["x", "gi"], dict(axis=1), [const("gi", i64([1 << 40]))],
         "Gather index 2^40"),
        ("gather_index_neg", "Gather", ["x", "gi"], dict(axis=1), [const("gi", i64([-100]))], "Gather index -100"),
        ("split_sizes", "Split", ["x", "sp"], dict(axis=1), [const("sp", i64([3, 3]))], "Split sizes not summing"),
        ("split_neg", "Split", ["x", "sp"], dict(axis=1), [const("sp", i64([6, -2]))], "Split negative size"),
        ("squeeze_axis7", "Squeeze", ["x", "ax"], {}, [const("ax", i64([7]))], "Squeeze axis 7"),
        ("squeeze_nonone", "Squeeze", ["x", "ax"], {}, [const("ax", i64([1]))], "Squeeze a dim of 4"),
        ("unsqueeze_axis100", "Unsqueeze", ["x", "ax"], {}, [const("ax", i64([100]))], "Unsqueeze axis 100"),
        ("reduce_axis50", "ReduceMean", ["x"], dict(axes=[50]), [], "ReduceMean axis 50 (opset 17 attribute)"),
        ("slice_step0", "Slice", ["x", "s0", "s1", "sa", "ss"], {},
         [const("s0", i64([0])), const("s1", i64([4])), const("sa", i64([1])), const("ss", i64([0]))], "Slice step 0"),
        ("slice_axis9", "Slice", ["x", "s0", "s1", "sa"], {},
         [const("s0", i64([0])), const("s1", i64([4])), const("sa", i64([9]))], "Slice axis 9"),
        ("layernorm_axis9", "LayerNormalization", ["x", "g", "bb"], dict(axis=9),
         [const("g", np.ones(4, np.float32)), const("bb", np.zeros(4, np.float32))], "LayerNormalization axis 9"),
        ("gemm_trans5", "Gemm", ["x", "W"], dict(transA=5), [const("W", W)], "Gemm transA 5"),
        ("cast_to99", "Cast", ["x"], dict(to=99), [], "Cast to dtype 99"),
        ("einsum_bad", "Einsum", ["x", "x"], dict(equation="ij,jk->ik->"), [], "Einsum equation garbage"),
        ("einsum_long", "Einsum", ["x"], dict(equation="abcdefghijklmnopqrstuvwxyz->a"), [], "Einsum 26 labels on rank 2"),
        ("reshape_allowzero", "Reshape", ["x", "s"], dict(allowzero=7), [const("s", i64([0, 4]))],
         "Reshape allowzero 7"),
        ("topk_huge", "TopK", ["x", "k"], {}, [const("k", i64([1 << 40]))], "TopK k 2^40"),
        ("maxpool_kernel0", "MaxPool", ["x"], dict(kernel_shape=[0, 0]), [], "MaxPool kernel 0")]:
    op_model([helper.make_node(op, ins, ["logits"], name=nm, **attrs)], inits, "attr/%s.onnx" % nm, nm, what,
             x_shape=x4 if op == "MaxPool" else (1, 4))
    if nm.startswith("gather_index"):
        # Constant indices are checked at load (prepare), and so when run.
        cases[-1] = cases[-1][:3] + (nm + ".*out of range", what + " (refused at load)")
        case("run", "attr/%s.onnx" % nm, "x_good.npy", nm + ".*out of range", what + " (run)")

# ---- NaN / Inf ----
npy("x_nan.npy", np.array([[1, np.nan, 2, 3]], np.float32))
npy("x_inf.npy", np.array([[1, np.inf, 2, 3]], np.float32))
case("run", "good.onnx", "x_nan.npy", "NaN|finite", "NaN in the input")
case("run", "good.onnx", "x_inf.npy", "Inf|finite", "Inf in the input")
Wn = W.copy(); Wn[2, 1] = np.nan
m = model([helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")], [vi("x", [1, 4])], [vi("logits", [1, 3])],
          [const("W", Wn)])
case("run", save(m, "nan/weights_nan.onnx"), "x_good.npy", "NaN|finite", "NaN in a weight")
m = model([helper.make_node("Div", ["x", "z"], ["q"], name="div_zero"),
           helper.make_node("Sub", ["q", "q"], ["logits"], name="inf_minus_inf")],
          [vi("x", [1, 4])], [vi("logits", [1, 4])], [const("z", np.zeros(4, np.float32))])
case("run", save(m, "nan/inf_minus_inf.onnx"), "x_good.npy", "NaN|Inf|finite", "Inf - Inf inside the graph")
# Softmax of a constant row holding +inf, folded at load: inf - inf is NaN,
# which rp_expf (src/core/fastmath.h) once converted to int (UB:
# float-cast-overflow, found by the strict fuzz run). The NaN reaches the
# output and is refused.
m = model([helper.make_node("Softmax", ["ci"], ["s"], name="softmax_inf", axis=-1),
           helper.make_node("Add", ["x", "s"], ["logits"], name="add")],
          [vi("x", [1, 4])], [vi("logits", [1, 4])], [const("ci", np.array([[np.inf, 1, 2, 3]], np.float32))])
case("run", save(m, "fuzz/model/softmax_inf_constant.onnx"), "x_good.npy", "NaN|finite",
     "Softmax of a constant row with +inf: NaN into rp_expf's float -> int (fixed: NaN-safe clamp)")

# ---- bad .npy inputs ----
hdr = lambda d: (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d)
good_npy = open(path("x_good.npy"), "rb").read()
for k in (0, 5, 9, 30, len(good_npy) - 1):
    case("run", "good.onnx", write("npy/trunc_%d.npy" % k, good_npy[:k]), "truncated|empty|magic|header",
         "input .npy truncated at byte %d" % k)
case("run", "good.onnx", write("npy/huge_shape.npy",
                               hdr(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n") +
                               b"\0" * 16), "truncated|too large", ".npy header announcing 1e12 floats")
case("run", "good.onnx", write("npy/overflow_shape.npy",
                               hdr(b"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n")),
     "overflow|too large", ".npy shape overflowing")
case("run", "good.onnx", write("npy/neg_shape.npy", hdr(b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }\n")),
     "header", ".npy negative dim")
case("run", "good.onnx", write("npy/header_len_huge.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}"), "header",
     ".npy v2 header length 4 GB")
case("run", "good.onnx", write("npy/bad_magic.npy", b"\x93NUMPZ" + good_npy[6:]), "magic", "bad magic")
case("run", "good.onnx", write("npy/garbage_header.npy", hdr(b"{'descr': '<f4', 'shape': (1,4) 'x\n")), "header",
     "garbage header")
case("run", "good.onnx", write("npy/fortran.npy", hdr(b"{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4), }\n")
                                + b"\0" * 16), "Fortran", "Fortran-order array")
case("run", "good.onnx", write("npy/big_endian.npy", hdr(b"{'descr': '>f4', 'fortran_order': False, 'shape': (1, 4), }\n")
                                + b"\0" * 16), "big-endian", "big-endian floats")
case("run", "good.onnx", write("npy/structured.npy", hdr(b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }\n")
                                + b"\0" * 16), "structured|dtype", "structured dtype")
case("run", "good.onnx", npy("npy/wrong_shape.npy", np.ones((1, 5), np.float32)), "shape", "input of the wrong shape")
case("run", "good.onnx", npy("npy/wrong_dtype.npy", np.ones((1, 4), np.int64)), "dtype|int64", "int64 input")
case("run", "good.onnx", npy("npy/rank9.npy", np.ones((1,) * 9, np.float32)), "dimensions|rank", "rank-9 input")
case("run", "good.onnx", write("npy/not_npy.npy", b"hello, world\n"), "magic|not a .npy", "a text file")


# ---- images (relprop explain --image) ----
def png(w, h, rows=None, color_type=2, ihdr_w=None, ihdr_h=None, crc_ok=True):
    def chunk(t, d):
        c = zlib.crc32(t + d) & 0xffffffff
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", c if crc_ok else c ^ 1)
    ch = {0: 1, 2: 3, 6: 4}[color_type]
    raw = rows if rows is not None else b"".join(b"\0" + bytes(w * ch) for _ in range(h))
    iw, ih = w if ihdr_w is None else ihdr_w, h if ihdr_h is None else ihdr_h
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", iw, ih, 8, color_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


ok_png = png(32, 32)
write("img/ok_32.png", ok_png)
for nm, data, pat, what in [
        ("empty.png", b"", "empty", "empty image file"),
        ("text.png", b"this is not an image\n", "not a|unsupported|unknown|format", "text named .png"),
        ("trunc_header.png", ok_png[:20], "corrupt|truncated", "PNG cut inside IHDR"),
        ("trunc_data.png", ok_png[:len(ok_png) - 20], "corrupt|truncated", "PNG cut inside IDAT"),
        ("zero_width.png", png(1, 1, ihdr_w=0), "zero|corrupt|size", "PNG of width 0"),
        ("huge_dims.png", png(1, 1, ihdr_w=1 << 30, ihdr_h=1 << 30), "too large|corrupt|size",
         "PNG header announcing 2^30 x 2^30 pixels"),
        ("wide_dims.png", png(1, 1, ihdr_w=100000, ihdr_h=100000), "too large|corrupt|size|memory",
         "PNG header announcing 1e5 x 1e5 pixels with one pixel of data"),
        ("short_rows.png", png(32, 32, rows=b"\0" * 10), "corrupt|truncated", "PNG whose IDAT holds 10 bytes"),
        ("trunc.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "corrupt|truncated", "JPEG cut after APP0"),
        ("trunc.bmp", b"BM" + struct.pack("<IHHI", 1000, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 100, 100, 1, 24, 0, 0, 0, 0, 0, 0),
         "truncated|corrupt", "BMP without pixels"),
        ("huge.ppm", b"P6\n1000000 1000000\n255\n" + b"\0" * 30, "truncated|too large", "PPM announcing 1e6 x 1e6"),
        ("maxval0.pgm", b"P5\n2 2\n0\n\0\0\0\0", "maxval", "PGM maxval 0"),
        ("neg.ppm", b"P6\n-2 2\n255\n" + b"\0" * 12, "corrupt|header", "PPM negative width")]:
    case("explain", ORACLE, write("img/" + nm, data), pat, what)


# Sizes the model does not take: resized by the preprocessing (not an
# error), but extreme aspect ratios must not crash the resampler.
for w, h in ((1, 1), (5000, 1), (1, 20000), (3, 7)):
    case("any-explain", ORACLE, write("img/size_%dx%d.png" % (w, h), png(w, h)), ".", "a %dx%d image" % (w, h))
# Bad CRCs: refused by libpng, as by PIL (stb ignored them).
case("explain", ORACLE, write("img/bad_crc.png", png(32, 32, crc_ok=False)), "corrupt PNG: IHDR: CRC error",
     "PNG with bad CRCs")
# Pixel indices beyond the palette: stb made images of uninitialised stack
# bytes of them (a different map each run); now Pillow's gray for each
# missing entry (tests/test_images.c compares with Pillow, under valgrind).
def png_palette(w, h, plte):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\0" + bytes((x * 8 + y) % 256 for x in range(w)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)) +
            chunk(b"PLTE", plte) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
case("any-explain", ORACLE, write("img/palette_index_oob.png", png_palette(32, 32, bytes(range(6)))), ".",
     "PNG of 2 palette colours with indices up to 255 (stb read uninitialised memory)")
bmp_pal = b"".join(bytes((b, g, r, 0)) for r, g, b in ((200, 10, 20), (30, 220, 40)))
bmp_px = bytes((x * 8 + y) % 256 for y in range(32) for x in range(32))
case("any-explain", ORACLE, write("img/palette_index_oob.bmp",
                                  b"BM" + struct.pack("<IHHI", 62 + len(bmp_px), 0, 0, 62) +
                                  struct.pack("<IiiHHIIiiII", 40, 32, 32, 1, 8, 0, len(bmp_px), 0, 0, 2, 0) +
                                  bmp_pal + bmp_px), ".",
     "8-bit BMP of 2 palette colours with indices up to 255 (stb read uninitialised memory)")
case("explain", ORACLE, "../data/jpeg/many_scans_1000.jpg", "unsupported JPEG: more than 500 scans",
     "progressive JPEG of 1000 near-empty scans (Pillow decodes them, for minutes on large images)")
case("explain", ORACLE, "../data/jpeg/many_scans_work.jpg", "unsupported JPEG: its first .* scans visit more than",
     "4096x4096 progressive JPEG of 140 scans: too much work")

# ---- inputs found by the fuzzers (fuzz/crashes/, minimised) ----
# The fuzz targets' own inputs are replayed by tests/test_fuzz_corpus.c:
# tests/regressions/fuzz/model/ (ONNX files, through fuzz_model's code) and
# tests/regressions/fuzz/readers/ (a selector byte + the file, through
# fuzz_readers'). Here the CLI's side of the same findings.
# JPEG whose DHT code-length counts sum to 945 (> 256): Debian's stb_image
# writes past stbi__huffman.size[257] (fuzz_readers, minimised to 11 bytes).
# Refused as truncated: the segment claims 31 bytes and the file ends first.
dht = write("img/fuzz_jpeg_dht_overflow.jpg", bytes.fromhex("ffd8ffc4001f00ffdaffd9"))
with open(path("fuzz/readers/jpeg_dht_overflow"), "wb") as f:
    f.write(b"\x01" + open(path(dht), "rb").read())
case("explain", ORACLE, dht, "truncated JPEG",
     "JPEG DHT with 945 codes, cut short (stb wrote past its Huffman table)")
# The same overflow in a whole segment: counts summing to 945, and 945 values.
dht945 = bytes.fromhex("ffd8ffc4") + (2 + 17 + 945).to_bytes(2, "big") + b"\x00" + bytes(12) + \
    bytes([255, 255, 255, 180]) + bytes(range(256)) * 3 + bytes(177) + bytes.fromhex("ffd9")
write("img/jpeg_dht_945_codes.jpg", dht945)
with open(path("fuzz/readers/jpeg_dht_945_codes"), "wb") as f:
    f.write(b"\x01" + dht945)
case("explain", ORACLE, "img/jpeg_dht_945_codes.jpg", "corrupt JPEG: Bogus Huffman table definition",
     "JPEG DHT segment of 945 codes (a table holds 256)")
# A real JPEG (tools/make_jpeg_fixtures.py) with one segment broken at a time.
q75 = open(os.path.join(ROOT, "tests", "data", "jpeg", "pil_q75.jpg"), "rb").read()
sof = q75.index(b"\xff\xc0")
for nm, data, pat, what in [
        ("jpeg_sof_0_components.jpg", q75[:sof + 9] + b"\x00" + q75[sof + 10:], "corrupt JPEG: zero-size image .*0 components",
         "JPEG frame header with 0 components"),
        ("jpeg_sof_width_0.jpg", q75[:sof + 7] + b"\x00\x00" + q75[sof + 9:], "corrupt JPEG: zero-size image \\(0x",
         "JPEG of width 0"),
        ("jpeg_sos_table_3.jpg", q75.replace(b"\xff\xda\x00\x0c\x03\x01\x00", b"\xff\xda\x00\x0c\x03\x01\x33", 1),
         "corrupt JPEG: Huffman table 0x03 was not defined", "JPEG scan using Huffman tables 3, never defined"),
        ("jpeg_no_eoi.jpg", q75[:-2], "truncated JPEG: the file ends before its end-of-image marker",
         "JPEG without its end-of-image marker")]:
    assert data != q75, nm
    case("explain", ORACLE, write("img/" + nm, data), pat, what)
case("any-explain", ORACLE, "../data/jpeg/cjpeg_arithmetic.jpg", ".",
     "arithmetic-coded JPEG (cjpeg -arithmetic): decoded by libjpeg-turbo, as in Pillow")
# kind, model (under tests/regressions/), input, pattern, what
FUZZ = [
    ("explain", ORACLE, "fuzz/img/jpeg_huffman_table_undefined.jpg", "corrupt JPEG: Unsupported marker type 0x82",
     "JPEG scan using an undefined Huffman table (stb read past maxcode[18])"),
    ("explain", ORACLE, "fuzz/img/bmp_100_bytes_declaring_1048676x100.bmp", "truncated|corrupt|too large|claims",
     "100-byte BMP declaring 1048676x100 pixels (garbage compression field): decoded as a fill, 630 MB, 6 s"),
    # Known bugs outside the loader wait in tests/regressions/fuzz/pending/
    # (kind bug-...); once fixed, the model moves to fuzz/model/ and the
    # fuzz_ops recipe (.ops) to fuzz/ops/, and the bug- goes.
    ("inspect", "fuzz/model/gemm_required_input_omitted.onnx", None, "n0.*(missing|required|omitted|input)",
     "Gemm with its required input B omitted (''): NULL dereference in matmul.c prepare"),
    ("inspect", "fuzz/model/einsum_operand_omitted.onnx", None, "n0.*(missing|required|omitted|input)",
     "Einsum with its second operand omitted (''): NULL dereference in matmul.c:551 einsum_prepare"),
    ("inspect", "fuzz/model/conv_input_named_nul.onnx", None, "NUL byte",
     "Conv input named '\\0' (fuzz_model): was cut to '' = omitted, then a NULL dereference in conv.c:57"),
    ("inspect", "fuzz/model/gemm_input_named_nul.onnx", None, "NUL byte",
     "Gemm input named '\\0' (fuzz_model): was cut to '' = omitted, then a NULL dereference in matmul.c:67"),
    # Well-formed models whose values were undefined behaviour in C; now
    # defined (float -> integer saturates: src/core/convert.h; empty
    # operands are not offset), so they may load (any-), without a report.
    ("any-inspect", "fuzz/model/cast_float_to_int_overflow.onnx", None, ".",
     "CastLike of 1e30 to int64 (was UB: float-cast-overflow; saturates)"),
    ("any-inspect", "fuzz/model/elementwise_199_float_to_int.onnx", None, ".",
     "int64 Pow with exponent 1e30 (was UB: float-cast-overflow; saturates)"),
    ("any-inspect", "fuzz/model/reduce_l2_int_overflow_nan.onnx", None, ".",
     "int64 ReduceL2 whose sum of squares wraps negative: sqrt -> NaN -> int64 (was UB; NaN converts to 0)"),
    ("any-inspect", "fuzz/model/layernorm_empty_null_offset.onnx", None, ".",
     "LayerNormalization of a [2,2,0] constant (was NULL + 0 in normalize.c)"),
    ("any-inspect", "fuzz/model/matmul_empty_null_offset.onnx", None, ".",
     "MatMul of two [0] constants (was NULL + 0 in matmul.c)"),
    ("inspect", "fuzz/model/cast_inf_tensor_get_i64.onnx", None, "n0.*training_mode must be a bool",
     "Dropout whose training_mode is a float inf (was read as int64: UB)"),
    ("inspect", "fuzz/model/tensor_get_i64_float_max.onnx", None, "n1.*training_mode must be a bool",
     "Dropout whose training_mode is a double 3.4e38 (was read as int64: UB)"),
]
for kind, m, inp, pat, what in FUZZ:
    case(kind, m, inp, pat, what)

with open(path("cases.tsv"), "w") as f:
    f.write("# generated by tools/make_regressions.py; KIND\tMODEL\tINPUT\tPATTERN\tWHAT\n")
    for c in cases:
        assert all("\t" not in s and "\n" not in s for s in c), c
        f.write("\t".join(c) + "\n")
print("tests/regressions: %d cases" % len(cases))
