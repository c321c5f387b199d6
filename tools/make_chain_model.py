#!/usr/bin/python3
"""Write a long chain of small transformer-like blocks as an ONNX model, for
timing how the loader and rule assignment scale with the node count
(tools/bench_load). The tensors are tiny ([1, 4]), so the time is the
graph's, not the arithmetic's.

    /usr/bin/python3 tools/make_chain_model.py --nodes 100000 -o chain.onnx

One block (13 nodes) is a layer norm spelled out op by op (ReduceMean, Sub,
Mul, ReduceMean, Add, Sqrt, Div, Mul, Add: rule assignment finds it as a
region), a linear layer (MatMul, Add), a Relu and a residual Add; the chain
is padded with Relu nodes to exactly --nodes. With --shuffle the nodes are
written in a random order, so that the loader has to sort them.

The protobuf is written field by field (the few ONNX fields it needs), so
that no Python package beyond the standard library is needed."""
import argparse
import random
import struct

WIDTH = 4
BLOCK_NODES = 13
FLOAT = 1  # TensorProto.FLOAT
ATTR_INTS, ATTR_INT = 7, 2  # AttributeProto.AttributeType


def varint(v):
    v &= (1 << 64) - 1  # negative int64s as ten bytes, as protobuf does
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f_int(field, v):
    return varint(field << 3) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def attr_int(name, v):
    return f_bytes(1, name) + f_int(3, v) + f_int(20, ATTR_INT)


def attr_ints(name, vs):
    return f_bytes(1, name) + b"".join(f_int(8, v) for v in vs) + f_int(20, ATTR_INTS)


def node(op, ins, out, attrs=()):
    return (b"".join(f_bytes(1, i) for i in ins) + f_bytes(2, out) + f_bytes(3, out) + f_bytes(4, op) +
            b"".join(f_bytes(5, a) for a in attrs))


def tensor(name, dims, values):
    return (b"".join(f_int(1, d) for d in dims) + f_int(2, FLOAT) + f_bytes(8, name) +
            f_bytes(9, struct.pack(f"<{len(values)}f", *values)))


def value_info(name, dims):
    shape = b"".join(f_bytes(1, f_int(1, d)) for d in dims)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_int(1, FLOAT) + f_bytes(2, shape)))


def block(i, x, nodes, inits, rng):
    p = f"b{i}/"

    def add(op, ins, name, attrs=()):
        nodes.append(node(op, ins, p + name, attrs))
        return p + name

    def const(name, dims):
        count = 1
        for d in dims:
            count *= d
        inits.append(tensor(p + name, dims, [rng.uniform(-1, 1) for _ in range(count)]))
        return p + name

    reduce = (attr_ints("axes", [-1]), attr_int("keepdims", 1))
    mean = add("ReduceMean", [x], "mean", reduce)
    d = add("Sub", [x, mean], "centred")
    sq = add("Mul", [d, d], "squared")
    var = add("ReduceMean", [sq], "var", reduce)
    ve = add("Add", [var, "eps"], "var_eps")
    sd = add("Sqrt", [ve], "std")
    nx = add("Div", [d, sd], "normed")
    sc = add("Mul", [nx, const("gamma", [WIDTH])], "scaled")
    ln = add("Add", [sc, const("beta", [WIDTH])], "ln")
    h = add("MatMul", [ln, const("W", [WIDTH, WIDTH])], "fc")
    hb = add("Add", [h, const("b", [WIDTH])], "fc_bias")
    r = add("Relu", [hb], "relu")
    # The chain's last node writes the graph output.
    return add("Add", [x, r], "residual")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100000, help="exact node count (default 100000)")
    ap.add_argument("--shuffle", action="store_true", help="write the nodes in a random order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    if a.nodes < 1:
        ap.error("--nodes must be at least 1")
    rng = random.Random(a.seed)
    nodes, inits = [], [tensor("eps", [1], [1e-5])]
    x = "input"
    for i in range(a.nodes // BLOCK_NODES):
        x = block(i, x, nodes, inits, rng)
    for i in range(a.nodes - len(nodes)):
        nodes.append(node("Relu", [x], f"pad{i}"))
        x = f"pad{i}"
    # The last value becomes the graph output "output": rewrite that node.
    last = x
    nodes[-1] = nodes[-1].replace(f_bytes(2, last), f_bytes(2, "output"), 1)
    if a.shuffle:
        random.Random(a.seed).shuffle(nodes)
    graph = (b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "chain") + b"".join(f_bytes(5, t) for t in inits) +
             f_bytes(11, value_info("input", [1, WIDTH])) + f_bytes(12, value_info("output", [1, WIDTH])))
    model = f_int(1, 8) + f_bytes(2, "make_chain_model.py") + f_bytes(7, graph) + f_bytes(8, f_bytes(1, "") +
                                                                                          f_int(2, 17))
    with open(a.output, "wb") as f:
        f.write(model)


if __name__ == "__main__":
    main()
