#!/usr/bin/python3
"""Fixtures for tests/test_rule_fixtures.c: every built-in relevance rule
(src/rules/*.c) computed with numpy, in float64, from its formula as the
rule's file and docs/rules.md state it, on small random float32 tensors.
The C test builds the same one-node graph, runs relprop's rule and compares.

    /usr/bin/python3 tools/make_rule_fixtures.py tests/data/rules

Writes <dir>/manifest.json and one .npy per tensor. Needs numpy only.
Deterministic (fixed seed): re-running gives the same files."""
import json
import os
import sys

import numpy as np

RNG = np.random.default_rng(20240521)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "rules")
CASES = []


def f32(a):
    return np.asarray(a, dtype=np.float32)


def rand(*shape, lo=-1.0, hi=1.0):
    return f32(RNG.uniform(lo, hi, size=shape))


def sdiv(a, b):
    """The reference implementation's safe division (docs/method.md §1.2)."""
    b = np.asarray(b, dtype=np.float64)
    d = b + 1e-9
    d = np.where(d == 0, 1e-9, d)
    return np.where(b == 0, 0.0, a / d)


def stab(a, b, eps):
    """a / (b + eps sign b), sign(0) = +1; 0 where that is 0."""
    d = b + np.where(b >= 0, eps, -eps)
    return np.where(d == 0, 0.0, a / np.where(d == 0, 1.0, d))


def pos(a):
    return np.maximum(a, 0)


def neg(a):
    return np.minimum(a, 0)


def reduce_to(r, shape):
    """Sum r over the axes along which `shape` was broadcast to r.shape."""
    r = np.asarray(r, dtype=np.float64)
    while r.ndim > len(shape):
        r = r.sum(axis=0)
    for ax, d in enumerate(shape):
        if d == 1 and r.shape[ax] != 1:
            r = r.sum(axis=ax, keepdims=True)
    return r.reshape(shape)


# ---- linear maps F(x, W) (bias-free) and their vjp w.r.t. x ----

class MatMul:
    """y = x @ W, x [.., M, K], W [K, N]."""
    op, opset, attrs = "MatMul", 13, []

    def f(self, x, w):
        return np.asarray(x, np.float64) @ np.asarray(w, np.float64)

    def vjp(self, s, w):
        return s @ np.asarray(w, np.float64).T


class Gemm:
    """y = alpha x W^T (+ C), transB = 1."""
    op, opset = "Gemm", 13

    def __init__(self, alpha):
        self.alpha = alpha
        self.attrs = [{"name": "transB", "type": "int", "value": 1},
                      {"name": "alpha", "type": "float", "value": alpha}]

    def f(self, x, w):
        return self.alpha * (np.asarray(x, np.float64) @ np.asarray(w, np.float64).T)

    def vjp(self, s, w):
        return self.alpha * (s @ np.asarray(w, np.float64))


class Conv:
    """2-D, group 1, square stride and symmetric pads; N = 1."""
    op, opset = "Conv", 11

    def __init__(self, k, stride, pad):
        self.k, self.s, self.p = k, stride, pad
        self.attrs = [{"name": "kernel_shape", "type": "ints", "value": [k, k]},
                      {"name": "strides", "type": "ints", "value": [stride, stride]},
                      {"name": "pads", "type": "ints", "value": [pad] * 4}]

    def out_hw(self, h, w):
        return (h + 2 * self.p - self.k) // self.s + 1, (w + 2 * self.p - self.k) // self.s + 1

    def f(self, x, w):
        x = np.asarray(x, np.float64)[0]
        w = np.asarray(w, np.float64)
        C, H, W = x.shape
        oh, ow = self.out_hw(H, W)
        xp = np.zeros((C, H + 2 * self.p, W + 2 * self.p))
        xp[:, self.p:self.p + H, self.p:self.p + W] = x
        y = np.zeros((w.shape[0], oh, ow))
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, i * self.s:i * self.s + self.k, j * self.s:j * self.s + self.k]
                y[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
        return y[None]

    def vjp(self, s, w, xshape):
        s = np.asarray(s, np.float64)[0]
        w = np.asarray(w, np.float64)
        C, H, W = xshape[1:]
        gp = np.zeros((C, H + 2 * self.p, W + 2 * self.p))
        for i in range(s.shape[1]):
            for j in range(s.shape[2]):
                gp[:, i * self.s:i * self.s + self.k, j * self.s:j * self.s + self.k] += np.tensordot(
                    s[:, i, j], w, axes=([0], [0]))
        return gp[None, :, self.p:self.p + H, self.p:self.p + W]


def vjp_x(m, s, w, xshape):
    return m.vjp(s, w, xshape) if isinstance(m, Conv) else m.vjp(s, w)


def eff_parts(m, w):
    """Positive / negative parts of the raw weight standing for the effective
    weight's (a negative Gemm alpha swaps them)."""
    w = np.asarray(w, np.float64)
    if isinstance(m, Gemm) and m.alpha < 0:
        return neg(w), pos(w)
    return pos(w), neg(w)


# ---- the rules ----

def rule_epsilon_linear(m, x, w, b, r, eps):
    z = m.f(x, w) + (0 if b is None else (b.reshape(1, -1, 1, 1) if isinstance(m, Conv) else b))
    s = stab(r, z, eps)
    return x * vjp_x(m, s, w, x.shape)


def rule_zplus(m, x, w, r):
    wp, wn = eff_parts(m, w)
    z = m.f(pos(x), wp) + m.f(neg(x), wn)
    s = sdiv(r, z)
    return pos(x) * vjp_x(m, s, wp, x.shape) + neg(x) * vjp_x(m, s, wn, x.shape)


def rule_alpha_beta(m, x, w, r, alpha, beta):
    wp, wn = eff_parts(m, w)
    conv = isinstance(m, Conv)

    def f(w1, w2):
        z1, z2 = m.f(pos(x), w1), m.f(neg(x), w2)
        s1, s2 = (sdiv(r, z1), sdiv(r, z2)) if conv else (sdiv(r, z1 + z2),) * 2
        return pos(x) * vjp_x(m, s1, w1, x.shape) + neg(x) * vjp_x(m, s2, w2, x.shape)

    out = alpha * f(wp, wn)
    if beta != 0:
        out = out - beta * f(wn, wp)
    return out


def rule_gamma(m, x, w, r, gamma):
    wp, wn = eff_parts(m, w)
    w = np.asarray(w, np.float64)
    wu, wd = w + gamma * wp, w + gamma * wn
    z = m.f(x, w)
    zp = m.f(pos(x), wu) + m.f(neg(x), wd)
    zn = m.f(pos(x), wd) + m.f(neg(x), wu)
    sp = np.where(z >= 0, sdiv(r, zp), 0.0)
    sn = np.where(z < 0, sdiv(r, zn), 0.0)
    v = lambda s, ww: vjp_x(m, s, ww, x.shape)
    return pos(x) * (v(sp, wu) + v(sn, wd)) + neg(x) * (v(sp, wd) + v(sn, wu))


def rule_fixed(m, x, v, r):
    """flat (v = ones) and w^2 (v = W^2): R_x = vjp(F at v)(sdiv(R, F(1, v)))."""
    z = m.f(np.ones_like(x, dtype=np.float64), v)
    return vjp_x(m, sdiv(r, z), v, x.shape)


def rule_zb(m, x, w, r, low=None, high=None):
    lo = float(np.min(x)) if low is None else low
    hi = float(np.max(x)) if high is None else high
    wp, wn = eff_parts(m, w)
    L, H = np.full(x.shape, lo), np.full(x.shape, hi)
    z = m.f(x, w) - m.f(L, wp) - m.f(H, wn) + 1e-9
    s = r / z
    return x * vjp_x(m, s, w, x.shape) - L * vjp_x(m, s, wp, x.shape) - H * vjp_x(m, s, wn, x.shape)


def softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def rule_softmax(x, r, axis, legacy):
    """R_x = x * (R - s * sum_row R), -inf inputs counting as 0."""
    x64 = np.asarray(x, np.float64)
    if legacy:
        shp = x64.shape
        x2 = x64.reshape(int(np.prod(shp[:axis])), -1)
        s = softmax(x2, 1)
        r2 = np.asarray(r, np.float64).reshape(x2.shape)
        xi = np.where(np.isneginf(x2), 0.0, x2)
        return (xi * (r2 - s * r2.sum(axis=1, keepdims=True))).reshape(shp)
    s = softmax(x64, axis)
    xi = np.where(np.isneginf(x64), 0.0, x64)
    return xi * (r - s * np.sum(r, axis=axis, keepdims=True))


# ---- cases ----

def save(name, suffix, a):
    fn = "%s.%s.npy" % (name, suffix)
    np.save(os.path.join(OUT, fn), f32(a))
    return fn


def case(name, op, opset, rule, inputs, r, expected, params=None, attrs=None, y=None, conserves=False, n_out=1):
    """inputs: [(array, const)], expected: one array or None per input."""
    rec = {"name": name, "op": op, "opset": opset, "rule": rule, "params": params or {}, "attrs": attrs or [],
           "inputs": [{"file": save(name, "in%d" % i, a), "const": bool(c)} for i, (a, c) in enumerate(inputs)],
           "n_out": n_out, "rel_out": [save(name, "R%d" % k, rr) for k, rr in enumerate(r)],
           "expected": [None if e is None else save(name, "Rin%d" % i, e) for i, e in enumerate(expected)],
           "output": None if y is None else save(name, "y", y), "conserves": conserves}
    if conserves:
        tin = sum(float(np.sum(e)) for e in expected if e is not None)
        tout = sum(float(np.sum(np.asarray(rr, np.float64))) for rr in r)
        assert abs(tin - tout) <= 1e-6 * max(1.0, np.sum(np.abs(r[0]))), (name, tin, tout)
    CASES.append(rec)


def well_conditioned(z, lim=0.05):
    return np.min(np.abs(z)) > lim


def linear_inputs(m, xshape, wshape, positive_x=False, with_bias=False, cond=None):
    for _ in range(1000):
        x = rand(*xshape, lo=0.05 if positive_x else -1.0)
        w = rand(*wshape)
        b = rand(wshape[0] if isinstance(m, (Conv, Gemm)) else wshape[1]) if with_bias else None
        if cond is None or cond(x, w, b):
            return x, w, b
    raise RuntimeError("no well-conditioned draw")


def linear_case(name, m, rule, xshape, wshape, fn, params=None, bias=False, positive_x=False, cond=None,
                conserves=False):
    x, w, b = linear_inputs(m, xshape, wshape, positive_x, bias, cond)
    y = m.f(x, w)
    if b is not None:
        y = y + (b.reshape(1, -1, 1, 1) if isinstance(m, Conv) else b)
    r = rand(*y.shape)
    ins = [(x, False), (w, True)] + ([(b, True)] if b is not None else [])
    exp = [fn(m, x, w, b, np.asarray(r, np.float64))] + [None] * (len(ins) - 1)
    case(name, m.op, m.opset, rule, ins, [r], exp, params=params, attrs=m.attrs, y=y, conserves=conserves)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    mm, conv_s, conv_p = MatMul(), Conv(2, 2, 0), Conv(3, 1, 1)
    gemm, gemm_neg = Gemm(0.5), Gemm(-1.5)
    X_MM, W_MM = (1, 4, 5), (5, 3)
    X_CV, W_CV = (1, 2, 5, 5), (3, 2, 3, 3)
    X_PT, W_PT = (1, 3, 4, 4), (2, 3, 2, 2)

    # epsilon: z with the bias; well away from 0 so float32 vs float64 stays small
    def far(m, bias_on):
        return lambda x, w, b: well_conditioned(
            m.f(x, w) + (0 if b is None else (b.reshape(1, -1, 1, 1) if isinstance(m, Conv) else b)))
    linear_case("epsilon_matmul", mm, "epsilon", X_MM, W_MM,
                lambda m, x, w, b, r: rule_epsilon_linear(m, x, w, b, r, 0.01), {"epsilon": 0.01},
                cond=far(mm, False))
    linear_case("epsilon_gemm_bias", gemm, "epsilon", (3, 4), (2, 4),
                lambda m, x, w, b, r: rule_epsilon_linear(m, x, w, b, r, 1e-6), bias=True, cond=far(gemm, True))
    linear_case("epsilon_conv_bias", conv_p, "epsilon", X_CV, W_CV,
                lambda m, x, w, b, r: rule_epsilon_linear(m, x, w, b, r, 0.1), {"epsilon": 0.1}, bias=True,
                cond=far(conv_p, True))
    # epsilon on the Add of two activations (AttnLRP Eq. 8), v broadcast
    for _ in range(1000):
        u, v = rand(2, 3, 4), rand(3, 1)
        if well_conditioned(u + v):
            break
    z = np.asarray(u, np.float64) + v
    r = rand(2, 3, 4)
    s = stab(np.asarray(r, np.float64), z, 1e-3)
    case("epsilon_add_bcast", "Add", 14, "epsilon", [(u, False), (v, False)], [r],
         [u * s, v * reduce_to(s, v.shape)], params={"epsilon": 1e-3}, y=z)

    # z+: conserving on positive inputs (theory: every Z > 0)
    linear_case("zplus_matmul", mm, "zplus", X_MM, W_MM, lambda m, x, w, b, r: rule_zplus(m, x, w, r))
    linear_case("zplus_matmul_positive", mm, "zplus", X_MM, W_MM, lambda m, x, w, b, r: rule_zplus(m, x, w, r),
                positive_x=True, cond=lambda x, w, b: np.all(pos(w).sum(axis=0) > 0.1), conserves=True)
    linear_case("zplus_conv", conv_p, "zplus", X_CV, W_CV, lambda m, x, w, b, r: rule_zplus(m, x, w, r), bias=True)
    linear_case("zplus_gemm_negalpha", gemm_neg, "zplus", (3, 4), (2, 4),
                lambda m, x, w, b, r: rule_zplus(m, x, w, r))

    # alpha-beta with beta != 0
    linear_case("alpha_beta_matmul_a2b1", mm, "alpha_beta", X_MM, W_MM,
                lambda m, x, w, b, r: rule_alpha_beta(m, x, w, r, 2, 1), {"alpha": 2, "beta": 1})
    linear_case("alpha_beta_conv_a2b1", conv_p, "alpha_beta", X_CV, W_CV,
                lambda m, x, w, b, r: rule_alpha_beta(m, x, w, r, 2, 1), {"alpha": 2, "beta": 1}, bias=True)
    linear_case("alpha_beta_gemm_a15b05", gemm, "alpha_beta", (3, 4), (2, 4),
                lambda m, x, w, b, r: rule_alpha_beta(m, x, w, r, 1.5, 0.5), {"alpha": 1.5, "beta": 0.5}, bias=True)

    # gamma
    linear_case("gamma_matmul", mm, "gamma", X_MM, W_MM, lambda m, x, w, b, r: rule_gamma(m, x, w, r, 0.25),
                cond=lambda x, w, b: well_conditioned(mm.f(x, w), 0.02))
    linear_case("gamma_conv", conv_p, "gamma", X_CV, W_CV, lambda m, x, w, b, r: rule_gamma(m, x, w, r, 0.5),
                {"gamma": 0.5}, bias=True, cond=lambda x, w, b: well_conditioned(conv_p.f(x, w), 0.02))
    linear_case("gamma_gemm_negalpha", gemm_neg, "gamma", (3, 4), (2, 4),
                lambda m, x, w, b, r: rule_gamma(m, x, w, r, 1.0), {"gamma": 1.0},
                cond=lambda x, w, b: well_conditioned(gemm_neg.f(x, w), 0.02))

    # flat and w^2 (conserving)
    linear_case("flat_matmul", mm, "flat", X_MM, W_MM,
                lambda m, x, w, b, r: rule_fixed(m, x, np.ones_like(w, dtype=np.float64), r), conserves=True)
    linear_case("flat_conv_pad", conv_p, "flat", X_CV, W_CV,
                lambda m, x, w, b, r: rule_fixed(m, x, np.ones_like(w, dtype=np.float64), r), bias=True,
                conserves=True)
    linear_case("wsquare_matmul", mm, "wsquare", X_MM, W_MM,
                lambda m, x, w, b, r: rule_fixed(m, x, np.asarray(w, np.float64) ** 2, r), conserves=True)
    linear_case("wsquare_conv_patch", conv_s, "wsquare", X_PT, W_PT,
                lambda m, x, w, b, r: rule_fixed(m, x, np.asarray(w, np.float64) ** 2, r), bias=True,
                conserves=True)

    # z^B: bounds given, and min/max of the input
    linear_case("zb_conv_bounds", conv_s, "zb", X_PT, W_PT,
                lambda m, x, w, b, r: rule_zb(m, x, w, r, -1.5, 1.25), {"low": -1.5, "high": 1.25}, bias=True)
    linear_case("zb_matmul_minmax", mm, "zb", X_MM, W_MM, lambda m, x, w, b, r: rule_zb(m, x, w, r))

    # the paper's sum rule, with a broadcast constant (its share is dropped)
    u, c = rand(1, 3, 4), rand(3, 4)
    z = np.asarray(u, np.float64) + c
    r = np.asarray(rand(1, 3, 4), np.float64)
    s = sdiv(r, z)
    a, bb = u * s, reduce_to(c * s, c.shape)
    sa, sb, t = a.sum(), bb.sum(), r.sum()
    fa = sdiv(abs(sa), abs(sa) + abs(sb)) * t
    case("sum_add_const", "Add", 14, "sum", [(u, False), (c, True)], [r], [a * sdiv(fa, sa), None], y=z)

    # the paper's halved product rule, and AttnLRP's uniform rule
    U, V = rand(2, 3, 4), rand(2, 4, 5)
    Z = np.asarray(U, np.float64) @ V
    r = np.asarray(rand(2, 3, 5), np.float64)
    s = sdiv(r, Z)
    case("product_matmul", "MatMul", 13, "product", [(U, False), (V, False)], [r],
         [U * (s @ np.swapaxes(V, -1, -2)) / 2, V * (np.swapaxes(U, -1, -2) @ s) / 2], y=Z, conserves=True)
    s = stab(r / 2, Z, 1e-9)
    case("uniform_matmul", "MatMul", 13, "uniform", [(U, False), (V, False)], [r],
         [U * (s @ np.swapaxes(V, -1, -2)), V * (np.swapaxes(U, -1, -2) @ s)], params={"epsilon": 1e-9}, y=Z,
         conserves=True)
    Q, K = rand(1, 2, 3, 4), rand(1, 2, 5, 4)
    Z = np.einsum("bhid,bhjd->bhij", np.asarray(Q, np.float64), K)
    r = np.asarray(rand(1, 2, 3, 5), np.float64)
    s = stab(r / 2, Z, 1e-4)
    case("uniform_einsum_qk", "Einsum", 12, "uniform", [(Q, False), (K, False)], [r],
         [Q * np.einsum("bhij,bhjd->bhid", s, K), K * np.einsum("bhij,bhid->bhjd", s, Q)],
         params={"epsilon": 1e-4}, attrs=[{"name": "equation", "type": "string", "value": "bhid,bhjd->bhij"}],
         y=Z)
    A, B = rand(2, 3), rand(3)
    r = np.asarray(rand(2, 3), np.float64)
    case("uniform_mul_bcast", "Mul", 14, "uniform", [(A, False), (B, False)], [r], [r / 2, reduce_to(r / 2, (3,))],
         y=np.asarray(A, np.float64) * B, conserves=True)

    # AttnLRP's softmax rule
    x = rand(2, 3, 5, lo=-3, hi=3)
    r = np.asarray(rand(2, 3, 5), np.float64)
    case("softmax_last_axis", "Softmax", 13, "softmax", [(x, False)], [r], [rule_softmax(x, r, -1, False)],
         y=softmax(np.asarray(x, np.float64), -1))
    case("softmax_axis1", "Softmax", 13, "softmax", [(x, False)], [r], [rule_softmax(x, r, 1, False)],
         attrs=[{"name": "axis", "type": "int", "value": 1}], y=softmax(np.asarray(x, np.float64), 1))
    case("softmax_legacy_opset11", "Softmax", 11, "softmax", [(x, False)], [r], [rule_softmax(x, r, 1, True)],
         attrs=[{"name": "axis", "type": "int", "value": 1}],
         y=softmax(np.asarray(x, np.float64).reshape(2, 15), 1).reshape(2, 3, 5))
    xm = x.copy()
    xm[0, 1, 3] = -np.inf
    xm[1, 2, 0] = -np.inf
    case("softmax_masked", "Softmax", 13, "softmax", [(xm, False)], [r], [rule_softmax(xm, r, -1, False)],
         y=softmax(np.asarray(xm, np.float64), -1))

    # identity and route
    x = rand(2, 4, lo=-3, hi=3)
    r = np.asarray(rand(2, 4), np.float64)
    case("identity_softmax", "Softmax", 13, "identity", [(x, False)], [r], [r],
         y=softmax(np.asarray(x, np.float64), -1), conserves=True)
    x = rand(2, 3, 4)
    r = np.asarray(rand(4, 2, 3), np.float64)
    y = np.transpose(np.asarray(x, np.float64), (2, 0, 1))
    case("route_transpose", "Transpose", 13, "route", [(x, False)], [r],
         [np.transpose(y * sdiv(r, y), (1, 2, 0))], attrs=[{"name": "perm", "type": "ints", "value": [2, 0, 1]}],
         y=y, conserves=True)

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "tools/make_rule_fixtures.py", "cases": CASES}, f, indent=1)
        f.write("\n")
    print("%d cases in %s" % (len(CASES), OUT))


if __name__ == "__main__":
    main()
