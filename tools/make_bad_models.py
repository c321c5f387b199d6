#!/usr/bin/python3
"""Write the small malformed / unsupported ONNX models and .npy inputs that
tests/test_cli.sh feeds to relprop (committed under tests/data/bad/).

    /usr/bin/python3 tools/make_bad_models.py tests/data/bad
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def main(out):
    os.makedirs(out, exist_ok=True)
    x = vi("input", [1, 4])
    y = vi("logits", [1, 3])
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")

    # A good tiny classifier, the baseline the others break.
    onnx.save(model([helper.make_node("MatMul", ["input", "W"], ["logits"], name="fc")], [x], [y], [w]),
              f"{out}/tiny_ok.onnx")
    # An op relprop has no kernel for, and one from a foreign domain.
    m = model([helper.make_node("MatMul", ["input", "W"], ["h"], name="fc"),
               helper.make_node("Hardmax", ["h"], ["logits"], name="odd_op")], [x], [y], [w])
    onnx.save(m, f"{out}/unsupported_op.onnx")
    m = model([helper.make_node("MatMul", ["input", "W"], ["h"], name="fc"),
               helper.make_node("FancyNorm", ["h"], ["logits"], name="custom", domain="com.example")],
              [x], [y], [w])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(m, f"{out}/foreign_domain.onnx")
    # Shapes that cannot multiply: [1,4] x [5,3].
    w5 = numpy_helper.from_array(np.ones((5, 3), np.float32), "W")
    onnx.save(model([helper.make_node("MatMul", ["input", "W"], ["logits"], name="fc_bad")], [x], [y], [w5]),
              f"{out}/shape_mismatch.onnx")
    # An attribute out of range: Softmax axis 5 on a rank-2 tensor.
    onnx.save(model([helper.make_node("MatMul", ["input", "W"], ["h"], name="fc"),
                     helper.make_node("Softmax", ["h"], ["logits"], name="sm_bad", axis=5)], [x], [y], [w]),
              f"{out}/bad_attribute.onnx")
    # Weights in a side file that is not there.
    m = model([helper.make_node("MatMul", ["input", "W"], ["logits"], name="fc")], [x], [y], [w])
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "missing_weights.bin"), ("offset", "0"), ("length", "48")):
        e = t.external_data.add()
        e.key, e.value = k, v
    onnx.save(m, f"{out}/missing_external.onnx")

    # Inputs: right, wrong shape, wrong dtype, and a truncated .npy.
    np.save(f"{out}/x_ok.npy", np.array([[1, 2, 3, 4]], np.float32))
    np.save(f"{out}/x_wrong_shape.npy", np.ones((1, 5), np.float32))
    np.save(f"{out}/x_float64.npy", np.ones((1, 4), np.float64))
    raw = open(f"{out}/x_ok.npy", "rb").read()
    open(f"{out}/x_truncated.npy", "wb").write(raw[:-6])
    # A model whose image input has 2 channels: relprop feeds 1 or 3.
    w2 = numpy_helper.from_array(np.ones((4, 2, 4, 4), np.float32) / 32, "W")
    x2 = vi("input", [1, 2, 8, 8])
    m = model([helper.make_node("Conv", ["input", "W"], ["c"], name="patches", kernel_shape=[4, 4], strides=[4, 4]),
               helper.make_node("Flatten", ["c"], ["logits"], name="flat")], [x2], [vi("logits", [1, 16])], [w2])
    onnx.save(m, f"{out}/two_channels.onnx")
    # Images: a zero-size PPM, a text file named .png, a truncated PNG, a good one.
    with open(f"{out}/zero.ppm", "wb") as f:
        f.write(b"P6\n0 0\n255\n")
    with open(f"{out}/not_an_image.png", "w") as f:
        f.write("hello\n")
    from PIL import Image
    rgb = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    Image.fromarray(rgb).save(f"{out}/ok.png")
    raw = open(f"{out}/ok.png", "rb").read()
    open(f"{out}/truncated.png", "wb").write(raw[: len(raw) // 2])
    with open(f"{out}/labels_3.txt", "w") as f:
        f.write("cat\ndog\nbird\n")
    with open(f"{out}/labels_2.txt", "w") as f:
        f.write("cat\ndog\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/bad")
