#!/usr/bin/python3
"""Builds small random-weight ViT variants, exports each to ONNX at opset 13
(LayerNorm and GELU decomposed into primitive ops) and opset 17
(LayerNormalization op), and writes test fixtures with the expected maps of
all seven methods computed by tools/reference.py (float64).

    /usr/bin/python3 tools/export_variants.py [--out tests/variants] [--only a,b] [--stats]

Fixture layout, one folder per variant and opset, tests/variants/<variant>_op<13|17>/:

    model.onnx      batch 1, input "input" (1,3,H,W) float32, output "logits" (1,10)
    input.npy       (1,3,H,W) float32
    meta.json       variant, geometry (image size, patch, grid, prefix tokens,
                    readout row weights), heads, layers, explained classes, ...;
                    for the decomposed-softmax and classifier variants also
                    graph_expectations (attention nodes, classifier node rules)
    expected/class_<C>/<method>.npy   (P,) maps, patch tokens row-major; lrp_full (H,W)
    expected/class_<C>/logits.npy     (1,10) float32 (the float32 forward)

dynamic_batch_op<13|17>/ (model exported with dynamic_axes: input ['batch',3,H,W],
output ['batch',10]; input.npy and expected/ as above, for batch 1) also has

    input_batch2.npy                  (2,3,H,W) float32: sample 0 = input.npy, sample 1 another image
    expected_batch2_logits.npy        (2,10) float32
    expected_batch2_<method>_<sample>_class_<C>.npy   (P,) float64, transformer_attribution and
                                      rollout, each sample for its own explained classes
                                      (meta.json "batch2")

plus tests/variants/unsupported_windowed/ (model.onnx, input.npy, meta.json):
a Swin-style windowed-attention model that relprop must refuse, naming the node.

Weights: seeded, the authors' init style (trunc-normal std 0.02 Linear
weights and tokens, zero biases, LayerNorm ones/zeros, PyTorch default Conv
init), then the q and k weights are multiplied by QK_GAIN so that attention
is far from uniform and the maps are not degenerate.  Seeds come from the
variant's place in SEED_ORDER (append-only, so that adding a variant leaves
the others' fixtures byte-identical).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OPSETS = (13, 17)
NUM_CLASSES = 10
QK_GAIN = float(os.environ.get("QK_GAIN", 8.0))      # q, k weights: std 0.02 * QK_GAIN
W_GAIN = float(os.environ.get("W_GAIN", 3.0))        # v, proj, fc1, fc2 weights: std 0.02 * W_GAIN
LOGIT_SCALE = float(os.environ.get("LOGIT_SCALE", 10.0))  # classifier rescaled: max |logit| on the input
PRE_LOGITS_GAIN = float(os.environ.get("PRE_LOGITS_GAIN", 8.0))  # pre-logits weights: std 0.02 * this (Tanh not ~linear)
# classifier_bias variants: non-zero classifier biases, so that the fixture
# tests that they are ignored (docs/method.md §4.3: Linear, bias ignored; the bias Add
# after a MatMul belongs to it). Head: before calibrate_head, about half the
# spread of the logits; pre-logits: about half the spread of its pre-activations.
HEAD_BIAS_STD = 0.05
PRE_LOGITS_BIAS_STD = 0.5

COMMON = dict(dim=48, depth=2, heads=3, mlp_ratio=1.5, num_classes=NUM_CLASSES, qkv_bias=True)


def key_mask_last_column(n_prefix, grid, value=-1e4):
    """Additive key mask over the N tokens: the patches of the last grid
    column are masked (as padding would be); prefix tokens are kept."""
    gh, gw = grid
    m = np.zeros(n_prefix + gh * gw, dtype=np.float32)
    for i in range(gh):
        m[n_prefix + i * gw + gw - 1] = value
    return m.tolist()


VARIANTS = {
    "distilled": dict(
        desc="DeiT distilled: CLS + distillation token, logits = (head(x[:,0]) + head_dist(x[:,1])) / 2",
        img_size=(32, 32), patch=4, cls_token=True, dist_token=True, readout="distilled"),
    "meanpool": dict(
        desc="no CLS token; final LayerNorm, ReduceMean over all tokens, then the head",
        img_size=(32, 32), patch=4, cls_token=False, readout="mean",
        note="transformer_attribution (and, less so, generic_attention) of a mean-pooled model is dominated by "
             "the identity: r^T C = 1/N + r^T(C - I), and the G*R part is ~2e-4 of the map's maximum here, below the "
             "1e-3 tolerance; to test that part compare (map - 1/N) with (expected - 1/N)."),
    "registers": dict(
        desc="CLS + 4 register tokens prepended (CLS, R1..R4, patches); readout CLS",
        img_size=(32, 32), patch=4, cls_token=True, num_registers=4, readout="cls"),
    "separate_qkv": dict(
        desc="Hugging Face style: separate q, k, v Linear projections; scores Div by sqrt(d) after q @ k^T",
        img_size=(32, 32), patch=4, qkv="separate", scale_div=True),
    "prescaled_q": dict(
        desc="q multiplied by the scale before q @ k^T (torchvision/new timm), heads folded into the batch axis ([H,N,d])",
        img_size=(32, 32), patch=4, prescale_q=True, fold_heads=True),
    "patch14": dict(
        desc="patch 14 on 224x224: a 16x16 grid",
        img_size=(224, 224), patch=14),
    "nonsquare": dict(
        desc="non-square input 64x96 (H x W), patch 8: an 8x12 grid",
        img_size=(64, 96), patch=8),
    "masked": dict(
        desc="additive attention mask constant added to the scores before softmax: keys of the last grid column masked with -1e4 ([1,1,1,N] initializer)",
        img_size=(32, 32), patch=4, mask="last_column"),
    "decomposed_softmax": dict(
        desc="softmax written out by hand, numerically safe: s - s.amax(-1, keepdim=True), exp, / sum(-1, keepdim=True) "
             "(exported as ReduceMax, Sub, Exp, ReduceSum, Div; no Softmax node)",
        img_size=(32, 32), patch=4, softmax="max_exp"),
    "pre_logits": dict(
        desc="original ViT representation layer: logits = head(tanh(pre_logits(x[:,0]))), pre_logits a Linear D->D "
             "(two Gemms with a Tanh between them)",
        img_size=(32, 32), patch=4, pre_logits=True, classifier_bias=True),
    "matmul_head": dict(
        desc="classifier written as x[:,0] @ W^T + b: exported as MatMul + Add (as tf2onnx writes a Keras Dense), "
             "not Gemm; the graph output is the bias Add",
        img_size=(32, 32), patch=4, head_matmul=True, classifier_bias=True),
    "dynamic_batch": dict(
        desc="the plain timm-style ViT (CLS, fused qkv, Softmax, Gemm head) exported with a symbolic batch "
             "dimension: dynamic_axes {input: {0: batch}, logits: {0: batch}}, so the CLS Expand and the "
             "attention Reshapes take their shapes from Shape(input) (Shape, Gather, Unsqueeze, Concat)",
        img_size=(32, 32), patch=4, dynamic_batch=True),
}

# Seeds: 1000 + 100 * the variant's index here (build: 1000 + index). Append
# only: the first eight are the original variants in sorted order, as before.
SEED_ORDER = ["distilled", "masked", "meanpool", "nonsquare", "patch14", "prescaled_q", "registers",
              "separate_qkv", "decomposed_softmax", "pre_logits", "matmul_head", "dynamic_batch"]
assert sorted(SEED_ORDER) == sorted(VARIANTS)


def build(name, seed=None):
    v = dict(VARIANTS[name])
    v.pop("desc")
    v.pop("note", None)
    mask = v.pop("mask", None)
    classifier_bias = v.pop("classifier_bias", False)
    v.pop("dynamic_batch", None)             # an export option, not a model one
    kw = dict(COMMON)
    kw.update(v)
    if mask == "last_column":
        n_prefix = int(kw.get("cls_token", True)) + int(kw.get("dist_token", False)) + kw.get("num_registers", 0)
        grid = (kw["img_size"][0] // kw["patch"], kw["img_size"][1] // kw["patch"])
        kw["attn_mask"] = key_mask_last_column(n_prefix, grid)
    if seed is None:
        seed = 1000 + SEED_ORDER.index(name)
    torch.manual_seed(seed)
    m = ref.RefViT(**kw)
    init_weights(m)
    if classifier_bias:
        with torch.no_grad():
            nn.init.normal_(m.head.bias, std=HEAD_BIAS_STD)
            if m.pre_logits is not None:
                nn.init.normal_(m.pre_logits.bias, std=PRE_LOGITS_BIAS_STD)
    return m.eval(), seed


@torch.no_grad()
def init_weights(m):
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.trunc_normal_(mod.weight, std=0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.LayerNorm):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    for t in (m.cls_token, m.dist_token, m.reg_tokens, m.pos_embed):
        if t is not None:
            nn.init.trunc_normal_(t, std=0.02)
    for blk in m.blocks:
        a = blk.attn
        if a.qkv_mode == "fused":
            d = a.qkv.in_features
            a.qkv.weight[:2 * d] *= QK_GAIN
            a.qkv.weight[2 * d:] *= W_GAIN
        else:
            a.q.weight *= QK_GAIN
            a.k.weight *= QK_GAIN
            a.v.weight *= W_GAIN
        for lin in (a.proj, blk.mlp.fc1, blk.mlp.fc2):
            lin.weight *= W_GAIN
    if m.pre_logits is not None:
        m.pre_logits.weight *= PRE_LOGITS_GAIN


@torch.no_grad()
def calibrate_head(model, x):
    """Rescale the classifier weights (the head, and head_dist for DeiT) so
    that max |logit| on the fixture input is LOGIT_SCALE, as for a trained
    model; the gradients (and the non-LRP maps) scale with it, the LRP
    relevances do not."""
    y = model.float()(torch.as_tensor(x))
    k = LOGIT_SCALE / float(y.abs().max())
    for h in (model.head, model.head_dist):
        if h is not None:
            h.weight *= k
            h.bias *= k


def choose_classes(model, x, y):
    """The top-1 class, and the first class in rank order 5, 6, ..., 10, 2, 3, 4
    whose attn_gradcam map is not all zeros (so that at least one explained
    class exercises the gradcam weighting, not only its all-zero case)."""
    order = [int(c) for c in np.argsort(-y, kind="stable")]
    cands = order[4:] + order[1:4]
    for c in cands:
        o = ref.explain(model, x, c, dtype=torch.float64, methods=["attn_gradcam"])
        if np.any(o["attn_gradcam"]):
            break
    else:
        c = order[4]
    model.float()
    return [order[0], c]


DYNAMIC_AXES = {"input": {0: "batch"}, "logits": {0: "batch"}}


def export(model, path, opset, dynamic_batch=False):
    model = model.float().eval()
    H, W = model.img_size
    x = torch.zeros(1, 3, H, W)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"],
                      opset_version=opset, do_constant_folding=True,
                      dynamic_axes=DYNAMIC_AXES if dynamic_batch else None)


def batch_dimension(path):
    """The exported graph's batch dimension: the input's and output's dim 0
    (dim_param or dim_value), and the nodes that compute shapes from
    Shape(...) at run time (what a symbolic batch brings into the graph)."""
    import onnx
    g = onnx.load(path).graph

    def dim0(vi):
        d = vi.type.tensor_type.shape.dim[0]
        return d.dim_param if d.HasField("dim_param") else d.dim_value

    # shape tensors: Shape outputs, then (nodes in topological order) the
    # outputs of small integer ops whose every input is a shape tensor or a
    # constant
    const = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    shape_t, shape_ops = set(), {}
    for n in g.node:
        if n.op_type == "Shape" or (
                n.op_type in ("Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Mul", "Div", "Add", "Cast",
                              "ConstantOfShape", "Equal", "Where", "Reshape")
                and any(i in shape_t for i in n.input) and all(i in shape_t or i in const or not i for i in n.input)):
            shape_t.update(n.output)
            shape_ops[n.op_type] = shape_ops.get(n.op_type, 0) + 1
    dynamic_consumers = [n.name for n in g.node if n.op_type in ("Reshape", "Expand") and n.input[1] in shape_t]
    return {"input_dim0": dim0(g.input[0]), "output_dim0": dim0(g.output[0]),
            "shape_computing_nodes": dict(sorted(shape_ops.items())),
            "reshape_expand_with_runtime_shape": dynamic_consumers}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def op_histogram(path):
    import onnx
    g = onnx.load(path).graph
    hist = {}
    for n in g.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: -kv[1])), len(g.node)


def map_stats(o):
    """A few numbers that say whether a random model's maps are informative."""
    s = {}
    for k in ref.METHODS:
        a = np.asarray(o[k], np.float64).reshape(-1)
        mx, mean = np.abs(a).max(), np.abs(a).mean()
        s[k] = dict(max=float(a.max()), min=float(a.min()),
                    spread=float((a.max() - a.min()) / mx) if mx > 0 else 0.0,
                    peak_over_mean=float(mx / mean) if mean > 0 else 0.0,
                    n_zero=int((a == 0).sum()))
    A = o["A"][-1]
    s["last_attn_mean_row_max"] = float(A.max(-1).mean())
    return s


def expected_for(model, x, classes):
    out = {}
    for C in classes:
        o64 = ref.explain(model, x, C, dtype=torch.float64)
        o32 = ref.explain(model, x, C, dtype=torch.float32)
        out[C] = (o64, o32)
    model.float()
    return out


def write_fixture(name, model, seed, x, classes, results, opset, outdir, tried=(), batch2=None):
    d = os.path.join(outdir, "%s_op%d" % (name, opset))
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    mp = os.path.join(d, "model.onnx")
    dynamic = bool(VARIANTS[name].get("dynamic_batch"))
    export(model, mp, opset, dynamic_batch=dynamic)
    if dynamic:   # the batch must really be symbolic, and the graph compute its shapes from it
        bd = batch_dimension(mp)
        assert bd["input_dim0"] == "batch" and bd["output_dim0"] == "batch", bd
        assert all(bd["shape_computing_nodes"].get(op) for op in ("Shape", "Gather", "Concat")), bd
        assert any("Reshape" in n for n in bd["reshape_expand_with_runtime_shape"]), bd
    # check the exported weights: reload them into a fresh module and compare logits
    chk = ref.RefViT(**model.config)
    ref.load_onnx_weights(chk, mp)
    with torch.no_grad():
        y_chk = chk(torch.as_tensor(x)).numpy()
        y_ref = model.float()(torch.as_tensor(x)).numpy()
    assert np.abs(y_chk - y_ref).max() <= 1e-5 * max(1.0, np.abs(y_ref).max()), "ONNX weights differ"
    np.save(os.path.join(d, "input.npy"), x.astype(np.float32))
    conditioning = {}
    for C in classes:
        o64, o32 = results[C]
        cd = os.path.join(d, "expected", "class_%d" % C)
        os.makedirs(cd)
        np.save(os.path.join(cd, "logits.npy"), o32["logits"].astype(np.float32))
        for meth in ref.METHODS:   # patch maps float64; the (H,W) lrp_full float32 (size; judged by r)
            dt = np.float32 if meth == "lrp_full" else np.float64
            np.save(os.path.join(cd, meth + ".npy"), np.asarray(o64[meth], dtype=dt))
        conditioning[str(C)] = {m: float("%.3g" % ref.rel_err(o32[m], o64[m])) for m in ref.METHODS}
        conditioning[str(C)]["lrp_full_pearson"] = float("%.6f" % ref.pearson(o32["lrp_full"], o64["lrp_full"]))
    cfg = model.config
    H, W = cfg["img_size"]
    p = cfg["patch"]
    gh, gw = H // p, W // p
    prefix = (["cls"] if cfg["cls_token"] else []) + (["dist"] if cfg["dist_token"] else []) \
        + ["reg"] * cfg["num_registers"]
    r = model.readout_vector().numpy()
    hist, n_nodes = op_histogram(mp)
    stats = {str(C): map_stats(results[C][0]) for C in classes}
    meta = {
        "variant": name,
        "description": VARIANTS[name]["desc"],
        "opset": opset,
        "geometry": {
            "image_size": [H, W],
            "patch": p,
            "grid": [gh, gw],
            "num_patches": gh * gw,
            "num_tokens": len(prefix) + gh * gw,
            "prefix_tokens": len(prefix),
            "prefix_token_kinds": prefix,
            "token_order": "prefix tokens (%s) first, then patches row-major" % (", ".join(prefix) or "none"),
            "readout": cfg["readout"],
            "readout_row_weights": [float(v) for v in r],
            "readout_rows": {str(i): float(v) for i, v in enumerate(r) if v != 0}
            if cfg["readout"] != "mean" else "all rows, 1/N each",
        },
        "heads": cfg["heads"],
        "layers": cfg["depth"],
        "embed_dim": cfg["dim"],
        "head_dim": cfg["dim"] // cfg["heads"],
        "mlp_hidden": int(cfg["dim"] * cfg["mlp_ratio"]),
        "num_classes": cfg["num_classes"],
        "layernorm_eps": cfg["eps"],
        "attention": {
            "qkv": cfg["qkv"],
            "scale": ("q * scale before q @ k^T" if cfg["prescale_q"] else
                      "(q @ k^T) / sqrt(d)" if cfg["scale_div"] else
                      "(q @ k^T) * scale"),
            "heads_folded_into_batch": cfg["fold_heads"],
            "mask": None if cfg["attn_mask"] is None else {
                "kind": "additive constant [1,1,1,N] added to the scores before softmax",
                "values": cfg["attn_mask"],
                "masked_key_tokens": [i for i, v in enumerate(cfg["attn_mask"]) if v != 0],
            },
        },
        "classifier": classifier_desc(cfg),
        "explained_classes": list(classes),
        "explained_classes_rule": "the top-1 class, and the first class in rank order 5, 6, ..., 10, 2, 3, 4 whose attn_gradcam map is not all zeros",
        "input": {"file": "input.npy", "shape": [1, 3, H, W], "dtype": "float32",
                  "source": "torch.randn(1,3,%d,%d, generator=torch.Generator().manual_seed(%d))" % (H, W, seed)},
        "expected": {
            "layout": "expected/class_<C>/<method>.npy; (P,) patch maps row-major (prefix tokens dropped), lrp_full (H,W); logits.npy (1,%d) float32 forward" % cfg["num_classes"],
            "computed_by": "tools/reference.py explain(model, x, C, dtype=torch.float64), start_layer 0; the (P,) maps stored as float64, lrp_full (H,W) as float32",
            "readout_discrimination": readout_discrimination(model, x, classes, results),
            "methods": ref.METHODS,
            "float32_reference_vs_float64_rel_err": conditioning,
            "map_stats": stats,
        },
        "tolerance": "as the oracle cases: every map rel_err = max|cand - exp| / max|exp| <= 1e-3 "
                     "(1e-2 hard limit); lrp_full by Pearson r >= 0.99",
        "lrp_rule_notes": [
            "readout Gather / ReduceMean over tokens: routing rule R_x = x * vjp(sdiv(R, z))",
            "distilled (y1 + y2) / 2: Div by a constant = identity, the Add = normalised sum rule",
            "attention mask Add (constant): normalised sum rule with the constant's share dropped; "
            "the masked probabilities are exactly 0, so their relevance is 0 and the identity rule gives the same maps",
            "prefix tokens (cls, dist, registers) and the position embedding are constants: their relevance is dropped",
        ] + ([
            "decomposed softmax (ReduceMax, Sub, Exp, ReduceSum, Div): one region from the scores to the Div, "
            "identity rule as a whole (docs/method.md §3.3); A, G and R are read at the Div output",
        ] if cfg["softmax"] != "op" else []) + ([
            "pre-logits: Linear (alpha-beta, bias ignored), Tanh identity, then the head Linear",
        ] if cfg["pre_logits"] else []) + ([
            "head MatMul + Add: one Linear (alpha-beta, bias ignored); the bias Add is not a sum rule, so no "
            "relevance goes to the bias",
        ] if cfg["head_matmul"] else []),
        "model": {"file": "model.onnx", "bytes": os.path.getsize(mp), "sha256": sha256(mp),
                  "n_nodes": n_nodes, "op_histogram": hist,
                  "exporter": ("torch.onnx.export(batch 1, input_names=['input'], output_names=['logits'], "
                               "do_constant_folding=True, opset_version=%d)" % opset) if not dynamic else
                              ("torch.onnx.export(example batch 1, input_names=['input'], output_names=['logits'], "
                               "dynamic_axes=%s, do_constant_folding=True, opset_version=%d)" % (DYNAMIC_AXES, opset)),
                  "torch": torch.__version__},
        "weights": {"seed": seed,
                    "seed_search": "seeds %s tried; the first whose float32 reference maps are within %g of the "
                                   "float64 ones (lrp_full: Pearson >= %g) and whose second class has a non-zero "
                                   "attn_gradcam map was kept%s" % (list(tried), COND_MAX_REL, COND_MIN_R,
                                                                     "; for dynamic_batch also the batch-2 maps of both "
                                                                     "samples within %g" % COND_MAX_REL if dynamic else ""),
                    "init": "trunc-normal std 0.02 Linear weights, cls/dist/register tokens and pos_embed; "
                                          "zero Linear biases; LayerNorm ones/zeros; PyTorch default Conv init; "
                                          "q and k weights then multiplied by %g, v/proj/fc1/fc2 weights by %g; the classifier "
                                          "(weights and bias) rescaled so that max |logit| on input.npy is %g" % (QK_GAIN, W_GAIN, LOGIT_SCALE)},
        "generated_by": "/usr/bin/python3 tools/export_variants.py",
    }
    if VARIANTS[name].get("note"):
        meta["test_note"] = VARIANTS[name]["note"]
    if dynamic:
        meta["batch_dimension"] = dict(bd, **{
            "symbolic": True,
            "graph_input": "input ['batch', 3, %d, %d] float32; output logits ['batch', %d]" % (H, W, cfg["num_classes"]),
            "binding": "relprop binds the symbolic batch to 1 by default: input.npy and expected/ are for batch 1, "
                       "as in every other fixture; input_batch2.npy and expected_batch2_* are for a batch of 2",
            "note": "shape_computing_nodes: the nodes computing shape tensors from Shape(...) at run time; "
                    "reshape_expand_with_runtime_shape: the Reshape/Expand nodes whose target shape is one of them"})
        meta["batch2"] = batch2_meta(d, batch2, seed, classes, results, cfg)
    if cfg["pre_logits"]:
        meta["weights"]["init_pre_logits"] = "pre_logits Linear weight trunc-normal std 0.02 then multiplied by %g " \
            "(its pre-activations have std ~1, so the Tanh is not near-linear)" % PRE_LOGITS_GAIN
    if VARIANTS[name].get("classifier_bias"):
        meta["weights"]["init_classifier_bias"] = (
            "non-zero classifier biases (the maps must not depend on them): head bias N(0, %g^2) before the "
            "rescaling%s" % (HEAD_BIAS_STD, ", pre_logits bias N(0, %g^2)" % PRE_LOGITS_BIAS_STD if cfg["pre_logits"] else ""))
        meta["expected"]["bias_discrimination"] = bias_discrimination(model, x, classes, results)
    if cfg["softmax"] != "op" or cfg["pre_logits"] or cfg["head_matmul"]:
        meta["graph_expectations"] = graph_expectations(mp)
    if cfg["softmax"] != "op":   # (absent: one Softmax node)
        meta["attention"]["softmax"] = {
            "exp": "decomposed: Exp, ReduceSum, Div (the Div output is A)",
            "max_exp": "decomposed, row maximum subtracted first: ReduceMax, Sub, Exp, ReduceSum, Div "
                       "(the Div output is A)"}[cfg["softmax"]]
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return d


def graph_expectations(path):
    """What relprop must find in the graph, by node name, read off the
    exported graph by structure: per attention layer the node ending the
    softmax (a Softmax, or the Div of a decomposed one: Div(e, ReduceSum(e)),
    e = Exp(...)) and the A @ V MatMul; and the rules of the classifier nodes
    between the readout Gather and the logits and of the decomposed
    softmax's nodes, under the "paper" rule set (docs/method.md §3.4):
    kind/rule as rp_model_node_rule reports them, rule null where no
    relevance passes (the interior of a region)."""
    import onnx
    g = onnx.load(path).graph
    prod = {o: n for n in g.node for o in n.output}
    cons = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    inits = {t.name for t in g.initializer}
    attention, rules = [], {}
    for n in g.node:
        sm = n.op_type == "Softmax"
        if n.op_type == "Div" and n.input[0] in prod and n.input[1] in prod:
            e, s = prod[n.input[0]], prod[n.input[1]]
            sm = e.op_type == "Exp" and s.op_type == "ReduceSum" and s.input[0] == n.input[0]
            if sm:   # the region: Div (exit, identity) and its interior back to the scores
                rules[n.name] = ["region", "identity"]
                stack = [e, s]
                while stack:
                    k = stack.pop()
                    if k.name in rules or k.op_type not in ("Exp", "ReduceSum", "Sub", "ReduceMax"):
                        continue
                    rules[k.name] = ["in_region", None]
                    stack += [prod[i] for i in k.input if i in prod]
        if not sm:
            continue
        av = [c for c in cons.get(n.output[0], []) if c.op_type == "MatMul" and c.input[0] == n.output[0]]
        assert len(av) == 1, n.name
        attention.append({"softmax": n.name, "product": av[0].name})
    n = prod[g.output[0].name]            # the classifier, back from the logits to the readout Gather
    while n.op_type != "Gather":
        if n.op_type == "Gemm" or (n.op_type == "MatMul" and n.input[1] in inits):
            rules[n.name] = ["linear", "alpha_beta"]
        elif n.op_type == "Add" and any(i in inits for i in n.input):
            rules[n.name] = ["bias", "identity"]
        elif n.op_type == "Tanh":
            rules[n.name] = ["unary", "identity"]
        else:
            raise AssertionError("unexpected classifier node %s (%s)" % (n.name, n.op_type))
        n = prod[[i for i in n.input if i not in inits][0]]
    return {"attention_layers": attention,
            "node_rules_paper": dict(sorted(rules.items())),
            "node_rules_note": "[kind, rule] of rp_model_node_rule(m, \"paper\", ...); rule null: no relevance passes"}


def classifier_desc(cfg):
    pool = {"cls": "Gather(row 0) of the final LayerNorm output",
            "distilled": None,
            "mean": "ReduceMean over the token axis"}[cfg["readout"]]
    if pool is None:
        return "(Gemm(head, row 0) + Gemm(head_dist, row 1)) / 2"
    head = "MatMul + Add (bias)" if cfg["head_matmul"] else "Gemm"
    if cfg["pre_logits"]:
        return "%s, then Gemm (pre-logits, D->D), Tanh, then %s (head)" % (pool, head)
    return "%s on %s" % (head, pool) if cfg["readout"] == "cls" else "%s, then %s" % (pool, head)


def bias_discrimination(model, x, classes, results):
    """How far the maps would be (rel_err, worst class) if the head's bias
    took a share of the relevance, as it would if the bias Add were given
    the sum rule (constant's share dropped): R at the head's MatMul scaled
    by |u_t| / (|u_t| + |b_t|), u = logits - bias."""
    worst = {}
    orig = model.relprop
    for C in classes:
        y = results[C][0]["logits"][0, C]
        b = float(model.head.bias[C])
        u = float(y) - b
        c = abs(u) / (abs(u) + abs(b))
        model.relprop = lambda R, full=True, c=c: orig(R * c, full)
        try:
            o = ref.explain(model, x, C, dtype=torch.float64)
        finally:
            del model.relprop
        for m in ref.METHODS:
            if m == "lrp_full":
                continue
            v = ref.rel_err(o[m], results[C][0][m])
            worst[m] = max(worst.get(m, 0.0), float("%.3g" % v) if np.isfinite(v) else 1e30)
        worst.setdefault("relevance_share_kept", {})[str(C)] = float("%.3g" % c)
    model.float()
    return worst


def readout_discrimination(model, x, classes, results):
    """How far the maps read with a wrong readout (row 0 only; the mean
    over all rows) are from the expected ones (rel_err, worst class): a
    fixture only tests the readout where this is well above 1e-3."""
    out = {}
    N = model.num_tokens
    true_r = model.readout_vector()
    for label in ("row0", "mean"):
        rv = torch.zeros(N, dtype=torch.float64)
        if label == "row0":
            rv[0] = 1.0
        else:
            rv[:] = 1.0 / N
        if torch.allclose(rv, true_r):
            continue
        model.readout_vector = lambda rv=rv: rv
        try:
            worst = {}
            for C in classes:
                o = ref.explain(model, x, C, dtype=torch.float64)
                for m in ref.METHODS:
                    if m == "lrp_full":
                        continue
                    e = results[C][0][m]
                    v = ref.rel_err(o[m], e)
                    v = float("%.3g" % v) if np.isfinite(v) else 1e30   # expected all zeros
                    worst[m] = max(worst.get(m, 0.0), v)
            out["readout_" + label] = worst
        finally:
            del model.readout_vector
    model.float()
    return out


# ----------------------------------------------------------------------------
# Unsupported layout: Swin-style windowed attention
# ----------------------------------------------------------------------------

class WindowAttnBlock(nn.Module):
    """Pre-norm block whose attention runs inside non-overlapping ws x ws
    windows of the token grid (tokens reshaped into windows before the
    softmax), optionally on a cyclically shifted grid (Swin)."""

    def __init__(self, dim, heads, grid, ws, shift=0):
        super().__init__()
        self.dim, self.heads, self.grid, self.ws, self.shift = dim, heads, grid, ws, shift
        self.hd = dim // heads
        self.scale = self.hd ** -0.5
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):                                  # x: [B, gh*gw, C]
        B, L, C = x.shape
        gh, gw = self.grid
        ws = self.ws
        h = self.norm1(x).reshape(B, gh, gw, C)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        # window partition: [B*nW, ws*ws, C]
        w = h.reshape(B, gh // ws, ws, gw // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        nW = w.shape[0]
        qkv = self.qkv(w).reshape(nW, ws * ws, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)   # [nW, H, ws*ws, ws*ws]
        o = (a @ v).transpose(1, 2).reshape(nW, ws * ws, C)
        o = self.proj(o)
        # window reverse
        o = o.reshape(B, gh // ws, gw // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, gh, gw, C)
        if self.shift:
            o = torch.roll(o, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + o.reshape(B, L, C)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TinySwin(nn.Module):
    def __init__(self, img=32, patch=4, dim=24, heads=2, ws=4, num_classes=NUM_CLASSES):
        super().__init__()
        self.img, g = img, img // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.norm0 = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList([WindowAttnBlock(dim, heads, (g, g), ws, 0),
                                     WindowAttnBlock(dim, heads, (g, g), ws, ws // 2)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = self.norm0(t)
        for b in self.blocks:
            t = b(t)
        return self.head(self.norm(t).mean(1))


def write_unsupported(outdir, seed=77):
    import onnx
    d = os.path.join(outdir, "unsupported_windowed")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    torch.manual_seed(seed)
    m = TinySwin().eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
    mp = os.path.join(d, "model.onnx")
    torch.onnx.export(m, torch.zeros(1, 3, 32, 32), mp, input_names=["input"], output_names=["logits"],
                      opset_version=17, do_constant_folding=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).numpy()
    np.save(os.path.join(d, "input.npy"), x)
    with torch.no_grad():
        y = m(torch.as_tensor(x)).numpy()
    np.save(os.path.join(d, "logits.npy"), y)
    g = onnx.load(mp).graph
    softmax = [n.name for n in g.node if n.op_type == "Softmax"]
    # the window partition feeding each attention: the Reshape that produces [nW, ws*ws, C]
    hist, n_nodes = op_histogram(mp)
    meta = {
        "variant": "unsupported_windowed",
        "description": "Swin-style windowed attention: 32x32 input, patch 4 (8x8 grid of 64 tokens, no CLS), "
                       "dim 24, 2 heads, 2 blocks; attention inside non-overlapping 4x4 windows (4 windows of "
                       "16 tokens; the second block on a grid cyclically shifted by 2 with torch.roll), the tokens "
                       "reshaped into windows [4, 16, 24] before qkv and the softmax; mean pooling, then the head.",
        "opset": 17,
        "supported": False,
        "geometry": {"image_size": [32, 32], "patch": 4, "grid": [8, 8], "num_tokens": 64,
                     "window": [4, 4], "windows": 4, "tokens_per_window": 16},
        "attention_softmax_nodes": softmax,
        "attention_probabilities_shape": [4, 2, 16, 16],
        "expected_report": {
            "inspect": "reports the model as unsupported (windowed / non-global attention) and names the "
                       "offending Softmax node(s) %s (their attention is over 16 tokens in 4 windows, not over "
                       "the 64 tokens of the sequence), instead of listing attention layers as usable" % softmax,
            "explain": "fails with a clear error (non-zero exit status) naming the same node; no map written",
            "why": "docs/method.md §2.4 assumes one [H,N,N] attention matrix over all N tokens per layer; here A is "
                   "[nW*H, 16, 16] over windows (its batch axis holds windows, not heads), so reading it as "
                   "heads over 16 tokens would give a silently wrong map",
        },
        "input": {"file": "input.npy", "shape": [1, 3, 32, 32], "dtype": "float32",
                  "source": "torch.randn(1,3,32,32, generator=torch.Generator().manual_seed(%d))" % seed},
        "logits": "logits.npy (1,10) float32, for checking that `relprop run` still works on it",
        "model": {"file": "model.onnx", "bytes": os.path.getsize(mp), "sha256": sha256(mp),
                  "n_nodes": n_nodes, "op_histogram": hist, "torch": torch.__version__},
        "generated_by": "/usr/bin/python3 tools/export_variants.py",
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return d


# ----------------------------------------------------------------------------
# dynamic_batch: a second input of batch 2, for a batched mode
# ----------------------------------------------------------------------------

BATCH2_METHODS = ["transformer_attribution", "rollout"]


def batch2_input(seed, H, W):
    """(2,3,H,W): two consecutive torch.randn(1,3,H,W) draws of one generator
    seeded with `seed`; the first is input.npy (same generator, same seed)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(1, 3, H, W, generator=g), torch.randn(1, 3, H, W, generator=g)]).numpy()


def batch2_for(model, seed, x, classes):
    """Per sample of the batch-2 input: its explained classes (choose_classes,
    the rule of every fixture, on that sample's logits) and its maps, float64
    and float32, each sample explained on its own as a batch of 1 (the rows of
    a ViT do not interact; tools/reference.py's explain seeds row 0 only and
    its sum rule and z^B bounds would pool over the batch, so it is not run on
    the (2,...) tensor)."""
    H, W = model.img_size
    xb = batch2_input(seed, H, W)
    assert np.array_equal(xb[:1], x), "batch-2 sample 0 is not input.npy"
    with torch.no_grad():
        y2 = model.float()(torch.as_tensor(xb)).numpy()
        y1 = np.concatenate([model(torch.as_tensor(xb[b:b + 1])).numpy() for b in range(2)])
    assert np.abs(y2 - y1).max() <= 1e-5 * max(1.0, np.abs(y1).max()), "batch rows interact"
    samples = []
    for b in range(2):
        xs = xb[b:b + 1]
        cl = choose_classes(model, xs, y1[b])
        if b == 0:
            assert cl == list(classes), (cl, classes)
        res = {}
        for C in cl:
            res[C] = (ref.explain(model, xs, C, dtype=torch.float64, methods=BATCH2_METHODS),
                      ref.explain(model, xs, C, dtype=torch.float32, methods=BATCH2_METHODS))
        model.float()
        samples.append(dict(classes=cl, results=res))
    return dict(x=xb, logits=y2, samples=samples)


def batch2_conditioning_ok(batch2):
    return all(ref.rel_err(o32[m], o64[m]) <= COND_MAX_REL
               for s in batch2["samples"] for o64, o32 in s["results"].values() for m in BATCH2_METHODS)


def batch2_meta(d, batch2, seed, classes, results, cfg):
    """Writes input_batch2.npy, expected_batch2_logits.npy and
    expected_batch2_<method>_<sample>_class_<C>.npy into fixture folder d;
    returns their description for meta.json."""
    H, W = cfg["img_size"]
    nc = cfg["num_classes"]
    np.save(os.path.join(d, "input_batch2.npy"), batch2["x"].astype(np.float32))
    np.save(os.path.join(d, "expected_batch2_logits.npy"), batch2["logits"].astype(np.float32))
    samples = []
    for b, s in enumerate(batch2["samples"]):
        files, cond = {}, {}
        for C in s["classes"]:
            o64, o32 = s["results"][C]
            for meth in BATCH2_METHODS:
                fn = "expected_batch2_%s_%d_class_%d.npy" % (meth, b, C)
                np.save(os.path.join(d, fn), np.asarray(o64[meth], dtype=np.float64))
                files.setdefault(meth, {})[str(C)] = fn
                if b == 0:   # sample 0 is input.npy: the same maps as expected/class_<C>/
                    assert np.array_equal(np.asarray(o64[meth]), np.asarray(results[C][0][meth])), (C, meth)
            cond[str(C)] = {m: float("%.3g" % ref.rel_err(o32[m], o64[m])) for m in BATCH2_METHODS}
        y = batch2["logits"][b]
        samples.append({
            "sample": b,
            "image": "input.npy (the same values)" if b == 0 else "another random image (not in input.npy)",
            "explained_classes": list(s["classes"]),
            "top1_class": int(np.argmax(y)),
            "max_abs_logit": float("%.4g" % np.abs(y).max()),
            "files": files,
            "float32_reference_vs_float64_rel_err": cond,
        })
    return {
        "input": {
            "file": "input_batch2.npy", "shape": [2, 3, H, W], "dtype": "float32",
            "sample_0": "input.npy (identical values)",
            "sample_1": "another random image",
            "source": "torch.cat of two consecutive torch.randn(1,3,%d,%d) draws of "
                      "torch.Generator().manual_seed(%d); the first draw is input.npy" % (H, W, seed),
        },
        "logits": {"file": "expected_batch2_logits.npy", "shape": [2, nc], "dtype": "float32",
                   "note": "float32 forward of the batch (PyTorch); row b equals the batch-1 forward of sample b"},
        "methods": BATCH2_METHODS,
        "samples": samples,
        "layout": "expected_batch2_<method>_<sample>_class_<C>.npy: (P,) float64 patch maps, row-major, prefix "
                  "tokens dropped, for sample <sample> (0 or 1) of input_batch2.npy explained for class <C>; "
                  "each sample has its own explained classes (samples[b].explained_classes; the first is its "
                  "top-1 class, what rp_explain picks per sample when no classes are given)",
        "explained_classes_rule": "per sample, on its own logits: the top-1 class, and the first class in rank "
                                  "order 5, 6, ..., 10, 2, 3, 4 whose attn_gradcam map is not all zeros "
                                  "(the rule of every fixture); sample 0's are explained_classes",
        "computed_by": "each sample explained on its own, as a batch of 1: tools/reference.py explain(model, "
                       "sample, C, dtype=torch.float64), start_layer 0. The rows of a ViT do not interact, so a "
                       "batched run must give these maps for each row (sum-rule normalisation, z^B bounds and the "
                       "gradient seed all per sample)",
        "same_as_batch1": "sample 0's maps are byte-identical to expected/class_<C>/<method>.npy; rollout does "
                          "not depend on the class (a sample's two rollout files are equal)",
        "tolerance": "as the batch-1 maps: rel_err = max|cand - exp| / max|exp| <= 1e-3",
        "tested_by": "nothing yet: test_variants checks the batch-1 files only; these are for a test of the "
                     "batched mode (rp_model_set_batch(m, 2) before rp_model_prepare)",
    }


COND_MAX_REL = 2e-4      # float32 vs float64 reference, every map but lrp_full
COND_MIN_R = 0.9999      # lrp_full float32 vs float64 Pearson


def conditioning_ok(results):
    for o64, o32 in results.values():
        for m in ref.METHODS:
            if m != "lrp_full" and ref.rel_err(o32[m], o64[m]) > COND_MAX_REL:
                return False
        if ref.pearson(o32["lrp_full"], o64["lrp_full"]) < COND_MIN_R:
            return False
    return True


def make(name, max_tries=20):
    """Seeds base, base+1, ...: the first whose maps are well conditioned
    (a float32 implementation can match the float64 expected maps to 1e-3
    with margin) and whose second class has a non-zero attn_gradcam map;
    for dynamic_batch also the batch-2 sample's maps (batch2_conditioning_ok)."""
    base = 1000 + 100 * SEED_ORDER.index(name)
    tried = []
    for seed in range(base, base + max_tries):
        model, _ = build(name, seed)
        H, W = model.img_size
        x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(seed)).numpy()
        calibrate_head(model, x)
        with torch.no_grad():
            y = model.float()(torch.as_tensor(x))[0].numpy()
        classes = choose_classes(model, x, y)
        results = expected_for(model, x, classes)
        tried.append(seed)
        batch2 = batch2_for(model, seed, x, classes) if VARIANTS[name].get("dynamic_batch") else None
        if np.any(results[classes[1]][0]["attn_gradcam"]) and conditioning_ok(results) \
                and (batch2 is None or batch2_conditioning_ok(batch2)):
            return model, seed, x, classes, results, tried, batch2
        print("  %s: seed %d rejected" % (name, seed), file=sys.stderr)
    raise SystemExit("%s: no well-conditioned seed in %d tries" % (name, max_tries))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "variants"))
    ap.add_argument("--only", default="", help="comma-separated subset of variants")
    ap.add_argument("--stats", action="store_true", help="print map statistics only, write nothing")
    a = ap.parse_args()
    torch.set_num_threads(1)
    names = [n for n in VARIANTS if not a.only or n in a.only.split(",")]
    os.makedirs(a.out, exist_ok=True)
    for name in names:
        model, seed, x, classes, results, tried, batch2 = make(name)
        if a.stats:
            for C in classes:
                o64, o32 = results[C]
                st = map_stats(o64)
                print(name, C, "attn row max %.3f" % st["last_attn_mean_row_max"],
                      "logit %.2f" % np.abs(o64["logits"]).max(),
                      " ".join("%s:pk%.1f/s%.2f/z%d/c%.0e" % (m[:8], st[m]["peak_over_mean"], st[m]["spread"], st[m]["n_zero"],
                                                        ref.rel_err(o32[m], o64[m])) for m in ref.METHODS),
                      "lrpfull_r %.5f" % ref.pearson(o32["lrp_full"], o64["lrp_full"]))
            c0, c1 = classes
            print("   class maps corr (trans_attr) %.3f" % ref.pearson(results[c0][0]["transformer_attribution"],
                                                                   results[c1][0]["transformer_attribution"]))
            continue
        for op in OPSETS:
            d = write_fixture(name, model, seed, x, classes, results, op, a.out, tried, batch2)
            print("wrote", d, file=sys.stderr)
    if not a.stats and (not a.only or "unsupported_windowed" in a.only.split(",")):
        print("wrote", write_unsupported(a.out), file=sys.stderr)


if __name__ == "__main__":
    main()
