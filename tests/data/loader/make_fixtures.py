#!/usr/bin/python3
"""Regenerates the loader test fixtures (tests/test_loader.c) in
tests/data/loader/ and tests/data/external/. Needs the onnx and numpy Python
packages (Debian: python3-onnx, python3-numpy; made with onnx 1.12).

    /usr/bin/python3 tests/data/loader/make_fixtures.py

The models are deliberately small and some are deliberately broken; none is
checked with onnx.checker."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
EXT = os.path.join(os.path.dirname(HERE), "external")


def model(nodes, inputs, outputs, inits=(), opsets=(("", 17),), **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], **kw)
    m.ir_version = 8
    return m


def save(m, name, folder=HERE):
    onnx.save_model(m, os.path.join(folder, name))


def vi(name, dt=TensorProto.FLOAT, shape=(2, 3)):
    return helper.make_tensor_value_info(name, dt, shape)


# typed.onnx: one Constant per dtype, values in the typed fields (raw=False).
typed_vals = {
    "f32": (TensorProto.FLOAT, [1.5, -2.25, 3.0]),
    "f64": (TensorProto.DOUBLE, [1.0 / 3.0, -1e300, 2.5]),
    "i8": (TensorProto.INT8, [-128, 127, -1]),
    "i16": (TensorProto.INT16, [-32768, 32767, -2]),
    "i32": (TensorProto.INT32, [-2147483648, 2147483647, -3]),
    "i64": (TensorProto.INT64, [-(2**63), 2**63 - 1, -4]),
    "u8": (TensorProto.UINT8, [0, 255, 7]),
    "u16": (TensorProto.UINT16, [0, 65535, 8]),
    "u32": (TensorProto.UINT32, [0, 4294967295, 9]),
    "u64": (TensorProto.UINT64, [0, 2**64 - 1, 10]),
    "b": (TensorProto.BOOL, [True, False, True]),
}
nodes, outs = [], []
for name, (dt, vals) in typed_vals.items():
    t = helper.make_tensor(name + "_t", dt, [3], vals, raw=False)
    assert not t.HasField("raw_data")
    nodes.append(helper.make_node("Constant", [], [name], name="const_" + name, value=t))
    outs.append(vi(name, dt, (3,)))
# A scalar and an empty tensor in typed form too.
nodes.append(helper.make_node("Constant", [], ["scalar"], name="const_scalar",
                              value=helper.make_tensor("s", TensorProto.FLOAT, [], [42.0])))
outs.append(vi("scalar", TensorProto.FLOAT, ()))
nodes.append(helper.make_node("Constant", [], ["empty"], name="const_empty",
                              value=helper.make_tensor("e", TensorProto.INT64, [0, 4], [])))
outs.append(vi("empty", TensorProto.INT64, (0, 4)))
save(model(nodes, [], outs), "typed.onnx")

# features.onnx: symbolic dims, an initializer listed as an input, omitted
# optional inputs/outputs, unnamed nodes, every attribute kind, domains,
# metadata.
W = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
x.type.tensor_type.shape.dim.add()  # a dim with neither value nor param
nodes = [
    helper.make_node("Add", ["x_in", "W"], ["sum"]),  # named "": becomes Add_0
    helper.make_node("Clip", ["sum", "", "hi"], ["clipped"], name="clip"),
    helper.make_node("Dropout", ["clipped"], ["dropped", ""], name="drop", domain="ai.onnx"),
    helper.make_node("Custom", ["dropped"], ["y"], name="custom", domain="com.example",
                     f=0.5, i=-7, s="hello", floats=[1.0, 2.0], ints=[3, 4, 5], strings=["a", "bc"],
                     t=helper.make_tensor("tt", TensorProto.INT32, [2], [11, 12]),
                     g=helper.make_graph([], "sub", [], [])),
]
nodes[0].name = ""  # explicitly empty (present on the wire), unlike an unset name
hi = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "hi")
norank = helper.make_tensor_value_info("norank", TensorProto.INT64, None)  # no shape at all
m = model(nodes, [helper.make_tensor_value_info("x_in", TensorProto.FLOAT, ["batch", 2, 3]), vi("W"), x, norank],
          [vi("y")], inits=[W, hi], opsets=(("", 13), ("com.example", 2)))
# x is an unused extra input with a dim_param and a missing dim; norank has no shape.
helper.set_model_props(m, {"author": "relprop", "purpose": "loader test"})
save(m, "features.onnx")

# unsorted.onnx: a chain written consumers-first, plus an independent node
# whose relative position must be kept (stable sort).
nodes = [
    helper.make_node("Relu", ["b"], ["c"], name="third"),
    helper.make_node("Neg", ["x"], ["z"], name="independent"),
    helper.make_node("Relu", ["a"], ["b"], name="second"),
    helper.make_node("Relu", ["x"], ["a"], name="first"),
]
save(model(nodes, [vi("x")], [vi("c"), vi("z")]), "unsorted.onnx")

# cycle.onnx: p and q feed each other; r hangs off the cycle.
nodes = [
    helper.make_node("Relu", ["x"], ["r_out"], name="ok"),
    helper.make_node("Add", ["r_out", "q_out"], ["p_out"], name="p"),
    helper.make_node("Relu", ["p_out"], ["q_out"], name="q"),
    helper.make_node("Relu", ["q_out"], ["s_out"], name="after"),
]
save(model(nodes, [vi("x")], [vi("s_out")]), "cycle.onnx")

save(model([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")], [vi("x")], [vi("y")]),
     "missing_input.onnx")
save(model([helper.make_node("Relu", ["x"], ["y"], name="one"),
            helper.make_node("Neg", ["x"], ["y"], name="two")], [vi("x")], [vi("y")]), "dup_output.onnx")
save(model([helper.make_node("Relu", ["x"], ["y"], name="one")], [vi("x")], [vi("nowhere")]),
     "missing_output.onnx")

f16 = numpy_helper.from_array(np.ones((2, 3), dtype=np.float16), "half")
save(model([helper.make_node("Add", ["x", "half"], ["y"])], [vi("x")], [vi("y")], inits=[f16]),
     "float16_init.onnx")

bad_raw = numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), "w")
bad_raw.raw_data = bad_raw.raw_data[:-4]
save(model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], inits=[bad_raw]),
     "raw_mismatch.onnx")

bad_typed = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [1.0] * 6)
del bad_typed.float_data[-1]
save(model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], inits=[bad_typed]),
     "typed_mismatch.onnx")

rank9 = helper.make_tensor("w", TensorProto.FLOAT, [1] * 9, [1.0])
save(model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], inits=[rank9]),
     "rank9_init.onnx")
save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=[1] * 9)], [vi("y", shape=[1] * 9)]),
     "rank9_input.onnx")

nograph = onnx.ModelProto()
nograph.ir_version = 8
nograph.opset_import.add().version = 17
save(nograph, "no_graph.onnx")

# External data: W (float32 [2,3]) and B (int64 [3]) both in weights.bin.
def ext_model():
    Wn = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    Bn = np.array([7, -8, 9], dtype=np.int64)
    nodes = [helper.make_node("Add", ["x", "W"], ["s"], name="add"),
             helper.make_node("Cast", ["B"], ["Bf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["s", "Bf"], ["y"], name="add2")]
    return model(nodes, [vi("x")], [vi("y")],
                 inits=[numpy_helper.from_array(Wn, "W"), numpy_helper.from_array(Bn, "B")])


for f in os.listdir(EXT):
    os.remove(os.path.join(EXT, f))
onnx.save_model(ext_model(), os.path.join(EXT, "model.onnx"), save_as_external_data=True,
                all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)


def with_location(tag, edit):
    m = onnx.load(os.path.join(EXT, "model.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        if t.name == "W":
            for e in t.external_data:
                edit(e)
    save(m, tag + ".onnx", EXT)


with_location("escape", lambda e: e.key == "location" and setattr(e, "value", "../escape.bin"))
with_location("absolute", lambda e: e.key == "location" and setattr(e, "value", "/etc/hostname"))
with_location("missing", lambda e: e.key == "location" and setattr(e, "value", "nope.bin"))
with_location("short", lambda e: e.key == "offset" and setattr(e, "value", "4096"))
# For the symlink test (the test makes weights.bin a link out of a temp dir).

# .npy files as numpy writes them: test_loader reads each and checks that
# rp_npy_write reproduces it byte for byte.
np.save(os.path.join(HERE, "np_f32.npy"), np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
np.save(os.path.join(HERE, "np_i64.npy"), np.array([-5, 0, 7, 2**40], dtype=np.int64))
np.save(os.path.join(HERE, "np_bool0d.npy"), np.array(True))
np.save(os.path.join(HERE, "np_u8_empty.npy"), np.zeros((0, 3), dtype=np.uint8))
np.save(os.path.join(HERE, "np_f64_rank8.npy"), np.arange(2 ** 8, dtype=np.float64).reshape([2] * 8))
with open(os.path.join(HERE, "np_v2.npy"), "wb") as f:
    np.lib.format.write_array(f, np.arange(6, dtype=np.int16).reshape(3, 2), version=(2, 0))

# product_fusion.onnx: products and their neighbours, for the memory plan's
# fusions (graph/plan.c). Fuse: projections mk + ak, mqq + aqq and their
# scores mqk through Transpose tkk (k's buffer must outlive the skipped
# Transpose while q's is made); m1 + bias a1; m2 + bias a2 (bias first,
# through reshapes); m5 + bias a5 (the graph output); attention's
# q·Transpose(k) * scale (mq, tk, sq). Stay apart: m3 (bias varies along
# rows), m4 (output read twice), sum4 (two activations), mt (its B is a
# Transpose of all three axes; its result goes through a Mul by a row).
rng = np.random.default_rng(7)


def init(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


fusion_inits = [init("Wk", 6, 4), init("bk", 4), init("Wq", 6, 4), init("bq", 4), init("W1", 6, 4), init("b1", 4), init("W2", 4, 3), init("b2", 1, 3), init("W3", 3, 3),
                init("b3", 5, 1), init("W4", 3, 3), init("b4", 3), init("W5", 3, 2), init("b5", 2),
                numpy_helper.from_array(np.array(0.125, dtype=np.float32), "scale"),
                numpy_helper.from_array(np.array([10, 4], dtype=np.int64), "flat"),
                numpy_helper.from_array(np.array([2, 5, 3], dtype=np.int64), "unflat")]
nodes = [
    helper.make_node("MatMul", ["x", "Wk"], ["yk"], name="mk"),
    helper.make_node("Add", ["yk", "bk"], ["kk"], name="ak"),
    helper.make_node("Transpose", ["kk"], ["kt"], name="tkk", perm=[0, 2, 1]),
    helper.make_node("MatMul", ["x", "Wq"], ["yq"], name="mqq"),
    helper.make_node("Add", ["yq", "bq"], ["qq"], name="aqq"),
    helper.make_node("MatMul", ["qq", "kt"], ["att"], name="mqk"),
    helper.make_node("MatMul", ["att", "x"], ["xm"], name="mix"),
    helper.make_node("MatMul", ["xm", "W1"], ["y1"], name="m1"),
    helper.make_node("Add", ["y1", "b1"], ["z1"], name="a1"),
    helper.make_node("Reshape", ["z1", "flat"], ["z1_flat"], name="r1"),
    helper.make_node("MatMul", ["z1_flat", "W2"], ["y2"], name="m2"),
    helper.make_node("Add", ["b2", "y2"], ["z2_flat"], name="a2"),
    helper.make_node("Reshape", ["z2_flat", "unflat"], ["z2"], name="r2"),
    helper.make_node("MatMul", ["z2", "W3"], ["y3"], name="m3"),
    helper.make_node("Add", ["y3", "b3"], ["z3"], name="a3"),
    # attention scores of z3 with itself: [2, 5, 5]
    helper.make_node("Transpose", ["z3"], ["z3_t"], name="tk", perm=[0, 2, 1]),
    helper.make_node("MatMul", ["z3", "z3_t"], ["qk"], name="mq"),
    helper.make_node("Mul", ["qk", "scale"], ["scores"], name="sq"),
    helper.make_node("Transpose", ["z3"], ["z3_rev"], name="tall", perm=[2, 1, 0]),
    helper.make_node("Transpose", ["z3_rev"], ["z3_back"], name="tback", perm=[2, 1, 0]),
    helper.make_node("MatMul", ["scores", "z3_back"], ["sv"], name="mt"),
    helper.make_node("Mul", ["sv", "b4"], ["svr"], name="rowmul"),
    helper.make_node("MatMul", ["svr", "W4"], ["y4"], name="m4"),
    helper.make_node("Add", ["y4", "b4"], ["z4"], name="a4"),
    helper.make_node("Relu", ["y4"], ["r4"], name="relu4"),
    helper.make_node("Add", ["z4", "r4"], ["s4"], name="sum4"),
    helper.make_node("MatMul", ["s4", "W5"], ["y5"], name="m5"),
    helper.make_node("Add", ["y5", "b5"], ["out"], name="a5"),
]
save(model(nodes, [vi("x", shape=(2, 5, 6))], [vi("out", shape=(2, 5, 2))], inits=fusion_inits),
     "product_fusion.onnx")

print("fixtures written to", HERE, "and", EXT)
