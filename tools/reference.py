#!/usr/bin/python3
"""Reference implementation of docs/method.md §3–§5 in plain PyTorch.

An independent implementation (written from the specification,
../shared/docs/METHOD.md, restated in docs/method.md; not from the paper
authors' code) of the relevance propagation of Chefer, Gur & Wolf (CVPR 2021)
and the six baselines relprop ships, on a plain PyTorch ViT whose token layout
and attention layout are parameters:

  * prefix tokens: CLS, distillation token (DeiT), register tokens, or none
  * readout: 'cls' (row 0), 'distilled' ((row 0 + row 1) / 2 through two heads
    averaged), 'mean' (ReduceMean over all tokens, no CLS)
  * attention: fused qkv Linear or separate q/k/v Linears (Hugging Face),
    `(q @ k^T) * scale` (timm) or q pre-scaled before the product (torchvision),
    heads as a separate axis or folded into the batch axis, an optional
    additive attention mask (a constant added to the scores before softmax),
    the softmax as one op or spelled out (Exp / ReduceSum / Div, optionally
    after subtracting the row maximum: ReduceMax / Sub)
  * classifier: a Linear (Gemm) or the same written as `f @ W^T + b`
    (MatMul + Add), optionally after a pre-logits layer (Linear D->D + Tanh,
    the original ViT's representation layer)
  * any patch size, non-square inputs.

The LRP rules are explicit module-level functions (relprop_linear,
relprop_conv_zb, relprop_sum, relprop_product, relprop_route); every module of
the ViT has a `relprop(R)` that applies them to the tensors it saved in its
last forward pass, in reverse order of the forward computation, i.e. as a walk
of the exported graph in reverse topological order would:

  Linear / Gemm / MatMul-with-constant  alpha-beta (alpha=1, beta=0), bias ignored
  first Conv (3 input channels)         z^B with lo/hi = min/max of the input
  Add of two activations (residuals)    normalised sum rule
  Add of a constant (position embedding,
    attention mask)                     normalised sum rule, constant's share dropped
  MatMul of two activations (q k^T, A V) product rule, halved; Z = the product
                                        itself (before the attention scale)
  Reshape/Transpose/Concat/Gather/
    Slice/Split/ReduceMean(tokens)      routing: R_x = x * vjp(sdiv(R, z))
  Softmax (also decomposed), LayerNorm,
    GELU, Tanh, Mul/Div by a constant
    (attention scale), /2               identity
  a tensor with several consumers       sum of the relevances sent back

Gradients G_l = d y_t / d A_l come from autograd.  The seven methods are read
through the readout vector r (docs/method.md §2.3) and restricted to the patch
columns.  float32 by default; `dtype=torch.float64` runs model and relevance
in double precision.

    python3 tools/reference.py --check-oracle [--oracle DIR] [--cases a,b]

reproduces every case in ../shared/oracle/cases (weights loaded from each
case's model.onnx) and prints the agreement table.

    from reference import RefViT, explain
    m = RefViT(img_size=(64, 96), patch=8, dim=48, depth=2, heads=3, ...)
    out = explain(m, x, cls)       # dict: maps of the seven methods + logits + A, G, R
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ["transformer_attribution", "rollout", "raw_attention", "attn_gradcam",
           "lrp_last_layer", "lrp_full", "generic_attention"]

EPS = 1e-9


# ----------------------------------------------------------------------------
# LRP rules (docs/method.md §4), module-level functions on plain tensors
# ----------------------------------------------------------------------------

def sdiv(a, b):
    """0 where b == 0, else a / (b + 1e-9) (1e-9 if b + 1e-9 == 0)."""
    den = b + EPS
    den = torch.where(den == 0, torch.full_like(den, EPS), den)
    return torch.where(b == 0, torch.zeros_like(a * den), a / den)


def _vjp(fn, inputs, cotangents):
    """Vector-Jacobian products of fn at `inputs` (tuple) for `cotangents`
    (tuple, one per output of fn)."""
    with torch.enable_grad():
        xs = tuple(x.detach().requires_grad_(True) for x in inputs)
        outs = fn(*xs)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        pairs = [(o, c) for o, c in zip(outs, cotangents) if c is not None]
        grads = torch.autograd.grad([o for o, _ in pairs], xs, [c for _, c in pairs],
                                    allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))


def relprop_linear(x, weight, R, alpha=1.0, beta=0.0):
    """Alpha-beta rule for y = x W^T + b (bias ignored)."""
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)

    def f(w1, w2):
        Z = F.linear(xp, w1) + F.linear(xn, w2)
        S = sdiv(R, Z)
        return xp * (S @ w1) + xn * (S @ w2)

    out = alpha * f(wp, wn)
    if beta != 0:
        out = out - beta * f(wn, wp)
    return out


def relprop_conv_zb(x, weight, R, stride, padding=0):
    """z^B rule for the first convolution (bias ignored); lo/hi are the
    scalar min/max of the whole input tensor."""
    lo = torch.full_like(x, float(x.min()))
    hi = torch.full_like(x, float(x.max()))
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)
    conv = lambda t, w: F.conv2d(t, w, stride=stride, padding=padding)
    Z = conv(x, weight) - conv(lo, wp) - conv(hi, wn) + EPS
    S = R / Z
    convT = lambda s, w: torch.nn.grad.conv2d_input(x.shape, w, s, stride=stride, padding=padding)
    return x * convT(S, weight) - lo * convT(S, wp) - hi * convT(S, wn)


def relprop_conv_ab(x, weight, R, stride, padding=0, alpha=1.0, beta=0.0):
    """Alpha-beta for a convolution that is not the first one (parts divided
    separately).  Unused by the ViTs here; kept for completeness of docs/method.md §4.3."""
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)
    conv = lambda t, w: F.conv2d(t, w, stride=stride, padding=padding)
    convT = lambda s, w: torch.nn.grad.conv2d_input(x.shape, w, s, stride=stride, padding=padding)

    def f(w1, w2):
        S1 = sdiv(R, conv(xp, w1))
        S2 = sdiv(R, conv(xn, w2))
        return xp * convT(S1, w1) + xn * convT(S2, w2)

    out = alpha * f(wp, wn)
    if beta != 0:
        out = out - beta * f(wn, wp)
    return out


# How a tensor consumed by several nodes merges the relevances they send
# back.  "sum" (docs/method.md §3.1): their plain sum.  "clone": the paper
# authors' Clone module, x * sum_i sdiv(R_i, x), which differs from the sum
# by the factor x / (x + 1e-9) (and is 0 where x == 0); it explains the
# residual float64 difference on the random DeiT-tiny oracle case (see
# --check-oracle --consumer-rule clone).
CONSUMER_RULE = "sum"


def merge_consumers(x, *Rs):
    if CONSUMER_RULE == "clone":
        return x * sum(sdiv(R, x) for R in Rs)
    return sum(Rs)


def _unbroadcast(t, shape):
    """Sum t over the axes along which an operand of `shape` was broadcast."""
    while t.dim() > len(shape):
        t = t.sum(0)
    for i, s in enumerate(shape):
        if s == 1 and t.shape[i] != 1:
            t = t.sum(i, keepdim=True)
    return t


def relprop_sum(u, v, R):
    """Normalised sum rule for z = u + v.  Returns (R_u, R_v); the caller
    drops the share of a constant operand."""
    z = u + v
    S = sdiv(R, z)
    a = _unbroadcast(u * S, u.shape)
    b = _unbroadcast(v * S, v.shape)
    sa, sb, T = a.sum(), b.sum(), R.sum()
    fa = sdiv(sa.abs(), sa.abs() + sb.abs()) * T
    fb = sdiv(sb.abs(), sa.abs() + sb.abs()) * T
    return a * sdiv(fa, sa), b * sdiv(fb, sb)


def relprop_product(U, V, R, fn=torch.matmul):
    """Product rule for Z = fn(U, V) of two activations: operand times the
    vector-Jacobian product of S = sdiv(R, Z), halved."""
    Z = fn(U, V)
    S = sdiv(R, Z)
    gU, gV = _vjp(fn, (U, V), (S,))
    return U * gU / 2, V * gV / 2


def relprop_route(fn, x, R):
    """Data movement (reshape, transpose, concat, gather, slice, split,
    ReduceMean over tokens): R_x = x * vjp(sdiv(R, z)).  fn may return a
    tuple; R is then a tuple (None for outputs that receive no relevance)."""
    z = fn(x)
    if isinstance(z, (tuple, list)):
        S = tuple(None if r is None else sdiv(r, zz) for r, zz in zip(R, z))
    else:
        S = (sdiv(R, z),)
    (g,) = _vjp(fn, (x,), S)
    return x * g


# ----------------------------------------------------------------------------
# The ViT
# ----------------------------------------------------------------------------

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.fc1(x)
        g = self.act(h)
        self._rec = (x, g)
        return self.fc2(g)

    def relprop(self, R):
        x, g = self._rec
        R = relprop_linear(g, self.fc2.weight, R)
        # GELU: identity
        return relprop_linear(x, self.fc1.weight, R)


class Attention(nn.Module):
    """qkv: 'fused' (one Linear, timm) or 'separate' (three, Hugging Face).
    prescale_q: q * scale before q @ k^T (torchvision) instead of scaling the
    product.  fold_heads: heads folded into the batch axis ([B*H, N, d]).
    attn_mask: None or a 1-D additive key mask of length N (0 = keep).
    scale_div: scores = (q @ k^T) / sqrt(d) (a Div) instead of * scale.
    softmax: 'op' (torch softmax, one Softmax node), 'exp' (e = exp(s);
    e / e.sum(-1, keepdim=True)) or 'max_exp' (the same after s - s.amax(-1,
    keepdim=True)): the decomposed forms export as Exp/ReduceSum/Div
    (and ReduceMax/Sub).  All three are the identity rule for LRP."""

    def __init__(self, dim, heads, qkv_bias=True, qkv="fused", prescale_q=False,
                 fold_heads=False, attn_mask=None, scale_div=False, softmax="op"):
        super().__init__()
        assert softmax in ("op", "exp", "max_exp")
        self.softmax_mode = softmax
        self.heads, self.head_dim = heads, dim // heads
        self.scale_div = scale_div
        self.scale = self.head_dim ** -0.5
        self.qkv_mode, self.prescale_q, self.fold_heads = qkv, prescale_q, fold_heads
        if qkv == "fused":
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        else:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.k = nn.Linear(dim, dim, bias=qkv_bias)
            self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if attn_mask is not None:
            self.register_buffer("attn_mask", torch.as_tensor(attn_mask, dtype=torch.float32))
        else:
            self.attn_mask = None
        self.keep_grad = False

    # --- data movement pieces (also used as routing functions in relprop) ---
    def _heads(self, t):                      # [B,N,C] -> [B,H,N,d] or [B*H,N,d]
        B, N, C = t.shape
        t = t.reshape(B, N, self.heads, self.head_dim).permute(0, 2, 1, 3)
        return t.reshape(B * self.heads, N, self.head_dim) if self.fold_heads else t

    def _split_fused(self, t):                # [B,N,3C] -> (q, k, v)
        B, N, C3 = t.shape
        C = C3 // 3
        if self.fold_heads:
            return tuple(self._heads(c) for c in t.split(C, dim=-1))
        t = t.reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return t[0], t[1], t[2]

    def _merge(self, o):                      # [B,H,N,d] or [B*H,N,d] -> [B,N,C]
        if self.fold_heads:
            BH, N, d = o.shape
            o = o.reshape(BH // self.heads, self.heads, N, d)
        B, H, N, d = o.shape
        return o.permute(0, 2, 1, 3).reshape(B, N, H * d)

    def _softmax(self, s):
        if self.softmax_mode == "op":
            return s.softmax(dim=-1)
        if self.softmax_mode == "max_exp":
            s = s - s.amax(dim=-1, keepdim=True)
        e = s.exp()
        return e / e.sum(dim=-1, keepdim=True)

    def _mask(self, ndim):
        n = self.attn_mask.shape[-1]
        return self.attn_mask.reshape((1,) * (ndim - 1) + (n,))

    def forward(self, x):
        if self.qkv_mode == "fused":
            t = self.qkv(x)
            q, k, v = self._split_fused(t)
        else:
            t = None
            tq, tk, tv = self.q(x), self.k(x), self.v(x)
            q, k, v = self._heads(tq), self._heads(tk), self._heads(tv)
        qs = q * self.scale if self.prescale_q else q
        kT = k.transpose(-2, -1)
        prod = qs @ kT
        if self.prescale_q:
            s = prod
        elif self.scale_div:                  # Hugging Face: scores / sqrt(d)
            s = prod / (self.head_dim ** 0.5)
        else:
            s = prod * self.scale
        sm = s + self._mask(s.dim()) if self.attn_mask is not None else s
        A = self._softmax(sm)
        if self.keep_grad and A.requires_grad:
            A.retain_grad()
        o = A @ v
        om = self._merge(o)
        self.A = A
        self._rec = dict(x=x, t=t, tq=None if t is not None else (tq, tk, tv),
                         q=q, k=k, v=v, qs=qs, kT=kT, s=s, A=A, o=o, om=om)
        return self.proj(om)

    def relprop(self, R):
        r = self._rec
        R = relprop_linear(r["om"], self.proj.weight, R)
        R_o = relprop_route(self._merge, r["o"], R)
        R_A, R_v = relprop_product(r["A"], r["v"], R_o)
        self.attn_cam = R_A                  # R_l: relevance of A as an operand of A V
        R_s = R_A                            # softmax (one op or decomposed): identity
        if self.attn_mask is not None:       # s + constant mask: sum rule, constant dropped
            R_s, _ = relprop_sum(r["s"], self._mask(r["s"].dim()), R_s)
        # attention scale (Mul by a constant): identity
        R_qs, R_kT = relprop_product(r["qs"], r["kT"], R_s)
        R_q = R_qs                           # q * scale (torchvision): identity
        R_k = relprop_route(lambda t: t.transpose(-2, -1), r["k"], R_kT)
        if self.qkv_mode == "fused":
            R_t = relprop_route(self._split_fused, r["t"], (R_q, R_k, R_v))
            return relprop_linear(r["x"], self.qkv.weight, R_t)
        tq, tk, tv = r["tq"]
        parts = [relprop_linear(r["x"], lin.weight, relprop_route(self._heads, tt, RR))
                 for lin, tt, RR in ((self.q, tq, R_q), (self.k, tk, R_k), (self.v, tv, R_v))]
        return merge_consumers(r["x"], *parts)      # x feeds three Linears


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, eps, **attn_kw):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias, **attn_kw)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, z):
        a = self.attn(self.norm1(z))
        z1 = z + a
        m = self.mlp(self.norm2(z1))
        self._rec = (z, a, z1, m)
        return z1 + m

    def relprop(self, R):
        z, a, z1, m = self._rec
        R_z1, R_m = relprop_sum(z1, m, R)
        R_z1 = merge_consumers(z1, R_z1, self.mlp.relprop(R_m))   # norm2: identity; z1: two consumers
        R_z, R_a = relprop_sum(z, a, R_z1)
        return merge_consumers(z, R_z, self.attn.relprop(R_a))     # norm1: identity


class RefViT(nn.Module):
    """readout: 'cls' | 'distilled' | 'mean'.  Token order: CLS, distillation
    token, registers, then the patches row-major.  The position embedding
    covers every token (timm default) and is added after the concatenation."""

    def __init__(self, img_size=(64, 64), patch=8, in_chans=3, num_classes=10, dim=96, depth=4,
                 heads=4, mlp_ratio=4.0, qkv_bias=True, eps=1e-6, cls_token=True,
                 dist_token=False, num_registers=0, readout="cls", qkv="fused",
                 prescale_q=False, fold_heads=False, attn_mask=None, scale_div=False,
                 softmax="op", pre_logits=False, head_matmul=False):
        super().__init__()
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size, self.patch = tuple(img_size), patch
        self.grid = (img_size[0] // patch, img_size[1] // patch)
        self.num_patches = self.grid[0] * self.grid[1]
        self.readout = readout
        assert readout in ("cls", "distilled", "mean")
        assert readout != "cls" or cls_token
        assert readout != "distilled" or (cls_token and dist_token)
        assert readout != "distilled" or not (pre_logits or head_matmul)
        self.n_prefix = int(cls_token) + int(dist_token) + num_registers
        self.num_tokens = self.n_prefix + self.num_patches
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if dist_token else None
        self.reg_tokens = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, dim))
        self.blocks = nn.ModuleList([
            Block(dim, heads, mlp_ratio, qkv_bias, eps, qkv=qkv, prescale_q=prescale_q,
                  fold_heads=fold_heads, attn_mask=attn_mask, scale_div=scale_div, softmax=softmax)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pre_logits = nn.Linear(dim, dim) if pre_logits else None   # then Tanh
        self.head_matmul = head_matmul
        self.head = nn.Linear(dim, num_classes)
        self.head_dist = nn.Linear(dim, num_classes) if readout == "distilled" else None
        self.config = dict(img_size=list(self.img_size), patch=patch, in_chans=in_chans,
                           num_classes=num_classes, dim=dim, depth=depth, heads=heads,
                           mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, eps=eps, cls_token=cls_token,
                           dist_token=dist_token, num_registers=num_registers, readout=readout,
                           qkv=qkv, prescale_q=prescale_q, fold_heads=fold_heads, scale_div=scale_div,
                           attn_mask=None if attn_mask is None else [float(v) for v in attn_mask],
                           softmax=softmax, pre_logits=pre_logits, head_matmul=head_matmul)

    def readout_vector(self):
        r = torch.zeros(self.num_tokens, dtype=torch.float64)
        if self.readout == "cls":
            r[0] = 1.0
        elif self.readout == "distilled":
            r[0] = r[1] = 0.5
        else:
            r[:] = 1.0 / self.num_tokens
        return r

    def _prefix(self, B):
        toks = []
        for t in (self.cls_token, self.dist_token, self.reg_tokens):
            if t is not None:
                toks.append(t.expand(B, -1, -1))
        return toks

    def _classify(self, f):
        """The classifier on the pooled features f [B, D]: optional pre-logits
        Linear + Tanh, then the head as a Linear (exported as Gemm) or as
        f @ W^T + b (MatMul + Add)."""
        if self.pre_logits is not None:
            self._rec["pre_in"] = f
            f = torch.tanh(self.pre_logits(f))
        self._rec["head_in"] = f
        if self.head_matmul:
            return torch.matmul(f, self.head.weight.t()) + self.head.bias
        return self.head(f)

    def _relprop_classifier(self, R):
        """R at the logits -> R at the pooled features (bias ignored; Tanh: identity)."""
        r = self._rec
        R = relprop_linear(r["head_in"], self.head.weight, R)
        if self.pre_logits is not None:
            R = relprop_linear(r["pre_in"], self.pre_logits.weight, R)
        return R

    def forward(self, x):
        B = x.shape[0]
        p = self.patch_embed(x)
        t = p.flatten(2).transpose(1, 2)
        pre = self._prefix(B)
        c = torch.cat(pre + [t], dim=1) if pre else t
        z = c + self.pos_embed
        for blk in self.blocks:
            z = blk(z)
        zf = self.norm(z)
        self._rec = dict(x=x, p=p, t=t, c=c, zf=zf)
        if self.readout == "cls":
            f = zf[:, 0]
            self._rec["f"] = f
            return self._classify(f)
        if self.readout == "distilled":
            f1, f2 = zf[:, 0], zf[:, 1]
            y1, y2 = self.head(f1), self.head_dist(f2)
            self._rec.update(f1=f1, f2=f2, y1=y1, y2=y2)
            return (y1 + y2) / 2
        f = zf.mean(dim=1)
        self._rec["f"] = f
        return self._classify(f)

    def relprop(self, R, full=True):
        """R: relevance at the logits.  Sets blk.attn.attn_cam for every block;
        returns the pixel relevance (B,3,H,W) when full, else None."""
        r = self._rec
        zf = r["zf"]
        if self.readout == "cls":
            R_f = self._relprop_classifier(R)
            R = relprop_route(lambda t: t[:, 0], zf, R_f)
        elif self.readout == "distilled":
            # (y1 + y2) / 2: Div by a constant -> identity; the Add -> sum rule
            R1, R2 = relprop_sum(r["y1"], r["y2"], R)
            R_f1 = relprop_linear(r["f1"], self.head.weight, R1)
            R_f2 = relprop_linear(r["f2"], self.head_dist.weight, R2)
            R = merge_consumers(zf, relprop_route(lambda t: t[:, 0], zf, R_f1),
                                relprop_route(lambda t: t[:, 1], zf, R_f2))
        else:
            R_f = self._relprop_classifier(R)
            R = relprop_route(lambda t: t.mean(dim=1), zf, R_f)
        # final norm: identity
        for blk in reversed(self.blocks):
            R = blk.relprop(R)
        if not full:
            return None
        R_c, _ = relprop_sum(r["c"], self.pos_embed, R)          # position embedding
        pre = self._prefix(r["x"].shape[0])
        if pre:                                                   # constant prefix tokens dropped
            R_t = relprop_route(lambda t: torch.cat(pre + [t], dim=1), r["t"], R_c)
        else:
            R_t = R_c
        R_p = relprop_route(lambda p: p.flatten(2).transpose(1, 2), r["p"], R_t)
        return relprop_conv_zb(r["x"], self.patch_embed.weight, R_p, stride=self.patch)


# ----------------------------------------------------------------------------
# Methods (docs/method.md §5)
# ----------------------------------------------------------------------------

def _heads_first(t, heads):
    """[1,H,N,N] or [H,N,N] -> [H,N,N]."""
    return t.reshape(heads, t.shape[-2], t.shape[-1])


def minmax0(m):
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def explain(model, x, cls, start_layer=0, dtype=torch.float32, methods=METHODS):
    """Runs forward, autograd backward of logit `cls`, and the LRP pass.
    Returns dict: <method> -> numpy map ((P,) or (H,W) for lrp_full),
    'logits', and per-layer lists 'A', 'G', 'R' of (H,N,N) numpy arrays."""
    model = model.to(dtype).eval()
    for blk in model.blocks:
        blk.attn.keep_grad = True
    x = torch.as_tensor(np.asarray(x)).to(dtype)
    with torch.enable_grad():
        y = model(x)
        model.zero_grad()
        y[0, cls].backward()
    heads = model.blocks[0].attn.heads
    A = [_heads_first(b.attn.A.detach(), heads) for b in model.blocks]
    G = [_heads_first(b.attn.A.grad.detach(), heads) for b in model.blocks]
    R0 = torch.zeros_like(y.detach())
    R0[0, cls] = 1.0
    with torch.no_grad():
        Rx = model.relprop(R0, full="lrp_full" in methods)
    Rl = [_heads_first(b.attn.attn_cam.detach(), heads) for b in model.blocks]
    for blk in model.blocks:
        blk.attn.keep_grad = False

    N = A[0].shape[-1]
    npre = model.n_prefix
    r = model.readout_vector().to(dtype)
    I = torch.eye(N, dtype=dtype)
    out = {"logits": y.detach().numpy(), "A": [a.numpy() for a in A],
           "G": [g.numpy() for g in G], "R": [rr.numpy() for rr in Rl]}
    read = lambda M: (r @ M)[npre:]

    if "transformer_attribution" in methods:
        C = None
        for l in range(start_layer, len(A)):
            Ab = (G[l] * Rl[l]).clamp(min=0).mean(0) + I
            C = Ab if C is None else Ab @ C
        out["transformer_attribution"] = read(C)
    if "rollout" in methods:
        C = None
        for l in range(start_layer, len(A)):
            Ah = A[l].mean(0) + I
            Ah = Ah / Ah.sum(dim=-1, keepdim=True)
            C = Ah if C is None else Ah @ C
        out["rollout"] = read(C)
    if "raw_attention" in methods:
        out["raw_attention"] = read(A[-1].clamp(min=0).mean(0))
    if "attn_gradcam" in methods:
        a = torch.einsum("n,hnm->hm", r, A[-1])[:, npre:]
        g = torch.einsum("n,hnm->hm", r, G[-1])[:, npre:]
        w = g.mean(dim=1, keepdim=True)
        out["attn_gradcam"] = minmax0((w * a).mean(0).clamp(min=0))
    if "lrp_last_layer" in methods:
        out["lrp_last_layer"] = read(Rl[-1].clamp(min=0).mean(0))
    if "lrp_full" in methods:
        out["lrp_full"] = Rx[0].sum(0)
    if "generic_attention" in methods:
        Rg = I.clone()
        for l in range(len(A)):
            Rg = Rg + (G[l] * A[l]).clamp(min=0).mean(0) @ Rg
        out["generic_attention"] = read(Rg)
    for k in methods:
        out[k] = out[k].detach().numpy()
    return out


# ----------------------------------------------------------------------------
# Loading weights from an exported ONNX ViT (timm-, einsum- or torchvision-style)
# ----------------------------------------------------------------------------

def onnx_params(path):
    """Walks the graph in node order and collects, by role: the patch Conv,
    the prefix token constants ([1,k,D] into Expand/Concat), the position
    embedding ([1,N,D] constant Add), the linear maps (MatMul/Gemm with a
    constant weight, with the bias of a following constant Add) in forward
    order, and the LayerNorm affine parameters (LayerNormalization, or the
    Mul/Add by [D] constants that end a decomposed one) in forward order.
    Initialisers shared between nodes (deduplicated at export) are fine."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    const[n.output[0]] = numpy_helper.to_array(a.t)
    changed = True
    while changed:                            # Identity of a constant (deduplicated initialisers)
        changed = False
        for n in g.node:
            if n.op_type == "Identity" and n.input[0] in const and n.output[0] not in const:
                const[n.output[0]] = const[n.input[0]]
                changed = True
    consumers, producer = {}, {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    conv = None
    tokens, pos, linears, norms = [], None, [], []

    def const_add_after(out, size):
        for c in consumers.get(out, []):
            if c.op_type == "Add":
                other = [i for i in c.input if i != out]
                if other and other[0] in const and const[other[0]].shape == (size,):
                    return const[other[0]]
        return None

    for n in g.node:
        ins = list(n.input)
        if n.op_type == "Conv" and conv is None:
            conv = (const[ins[1]], const[ins[2]] if len(ins) > 2 else None)
        elif n.op_type in ("Expand", "Concat"):
            for i in ins:
                if i in const and const[i].ndim == 3 and const[i].shape[0] == 1 and conv is not None \
                        and const[i].shape[2] == conv[0].shape[0]:
                    tokens.append(const[i])
        elif n.op_type == "Add" and pos is None and conv is not None:
            for i in ins:
                if i in const and const[i].ndim == 3 and const[i].shape[2] == conv[0].shape[0]:
                    pos = const[i]
        elif n.op_type == "MatMul" and ins[1] in const and const[ins[1]].ndim == 2:
            W = const[ins[1]].T
            linears.append((W, const_add_after(n.output[0], W.shape[0])))
        elif n.op_type == "Gemm" and ins[1] in const:
            W = const[ins[1]]
            tb = [a.i for a in n.attribute if a.name == "transB"]
            if not (tb and tb[0]):
                W = W.T
            linears.append((W, const[ins[2]] if len(ins) > 2 else None))
        elif n.op_type == "LayerNormalization":
            norms.append((const[ins[1]], const[ins[2]] if len(ins) > 2 else None))
        elif n.op_type == "Mul" and conv is not None:
            D = conv[0].shape[0]
            for i in ins:
                other = [j for j in ins if j != i]
                if i in const and const[i].shape == (D,) and other and other[0] in producer \
                        and producer[other[0]].op_type == "Div":
                    norms.append((const[i], const_add_after(n.output[0], D)))
    return dict(conv=conv, tokens=tokens, pos=pos, linears=linears, norms=norms)


def load_onnx_weights(model, path):
    """Copies the weights of an exported ViT into `model` (same geometry),
    mapping by role and order (see onnx_params)."""
    P = onnx_params(path)
    sd = {}
    T = lambda a: torch.tensor(np.array(a, dtype=np.float32))
    sd["patch_embed.weight"], sd["patch_embed.bias"] = T(P["conv"][0]), T(P["conv"][1])
    toks = np.concatenate(P["tokens"], axis=1) if P["tokens"] else None   # may be folded together
    k = 0
    for name in ("cls_token", "dist_token", "reg_tokens"):
        if getattr(model, name) is not None:
            n = getattr(model, name).shape[1]
            sd[name] = T(toks[:, k:k + n])
            k += n
    assert toks is None or k == toks.shape[1], "prefix token constants do not match the model"
    sd["pos_embed"] = T(P["pos"])
    lin, nrm = list(P["linears"]), list(P["norms"])
    names = ["qkv"] if model.blocks[0].attn.qkv_mode == "fused" else ["q", "k", "v"]
    for i, blk in enumerate(model.blocks):
        for nm in [f"attn.{s}" for s in names] + ["attn.proj", "mlp.fc1", "mlp.fc2"]:
            W, b = lin.pop(0)
            sd[f"blocks.{i}.{nm}.weight"] = T(W)
            if getattr(blk.get_submodule(nm), "bias") is not None:
                sd[f"blocks.{i}.{nm}.bias"] = T(b) if b is not None else torch.zeros(W.shape[0])
        for nm in ("norm1", "norm2"):
            w, b = nrm.pop(0)
            sd[f"blocks.{i}.{nm}.weight"], sd[f"blocks.{i}.{nm}.bias"] = T(w), T(b)
    w, b = nrm.pop(0)
    sd["norm.weight"], sd["norm.bias"] = T(w), T(b)
    for nm in ("pre_logits", "head", "head_dist"):
        if getattr(model, nm) is not None:
            W, b = lin.pop(0)
            sd[f"{nm}.weight"], sd[f"{nm}.bias"] = T(W), T(b)
    assert not lin and not nrm, "unmapped parameters left: %d linear, %d norm" % (len(lin), len(nrm))
    for i, blk in enumerate(model.blocks):
        if blk.attn.attn_mask is not None:       # a constant of the graph; kept from `model`
            sd[f"blocks.{i}.attn.attn_mask"] = blk.attn.attn_mask
    model.load_state_dict(sd, strict=True)
    return model


# ----------------------------------------------------------------------------
# --check-oracle
# ----------------------------------------------------------------------------

def rel_err(c, e):
    c = np.asarray(c, np.float64).reshape(-1)
    e = np.asarray(e, np.float64).reshape(-1)
    if not np.isfinite(e).all():
        if not np.isfinite(e).any():                       # all-NaN official gradcam
            return 0.0 if not np.any(c) else math.inf
        keep = np.isfinite(e)
        c, e = c[keep], e[keep]
    s = np.abs(e).max()
    d = np.abs(c - e).max()
    return d / s if s > 0 else (0.0 if d == 0 else math.inf)


def pearson(c, e):
    c = np.asarray(c, np.float64).reshape(-1)
    e = np.asarray(e, np.float64).reshape(-1)
    return float(np.corrcoef(c, e)[0, 1])


def _case_dir(cdir, name):
    """cases/<c>/<name>, following a symbolic link that a copy turned into a
    small text file holding the link target (e.g. '../fmnist_vit_s__timm17/inputs')."""
    p = os.path.join(cdir, name)
    if os.path.isfile(p) and os.path.getsize(p) < 4096:
        target = open(p).read().strip()
        q = os.path.normpath(os.path.join(cdir, target))
        if os.path.isdir(q):
            return q
    return p


def model_from_meta(meta, style):
    m = meta["model"]
    return RefViT(img_size=m["img_size"], patch=m["patch_size"], num_classes=m["num_classes"],
                  dim=m["embed_dim"], depth=m["depth"], heads=m["num_heads"],
                  mlp_ratio=m["mlp_ratio"], qkv_bias=m["qkv_bias"], eps=m["layernorm_eps"],
                  prescale_q=(style == "tv"), fold_heads=(style == "tv"))


def check_oracle(root, cases=None, verbose=False):
    torch.set_num_threads(1)
    names = sorted(d for d in os.listdir(os.path.join(root, "cases")) if not d.startswith("."))
    if cases:
        names = [n for n in names if n in cases]
    short = {"transformer_attribution": "trans_attr", "rollout": "rollout",
             "raw_attention": "raw_attn", "attn_gradcam": "gradcam",
             "lrp_last_layer": "lrp_last", "lrp_full": "lrp_full",
             "generic_attention": "generic"}
    rows = []
    for name in names:
        cdir = os.path.join(root, "cases", name)
        meta = json.load(open(os.path.join(cdir, "meta.json")))
        style = meta["onnx"]["export_style"]
        model = model_from_meta(meta, style)
        load_onnx_weights(model, os.path.join(cdir, "model.onnx"))
        res = {}   # (key, method) -> worst
        logit_err = 0.0
        cam_err = 0.0
        for inp in meta["inputs"]:
            K = inp["index"]
            x = np.load(os.path.join(_case_dir(cdir, "inputs"), "input_%d.npy" % K))
            for C in inp["explained_classes"]:
                edir = os.path.join(_case_dir(cdir, "expected"), "input_%d" % K, "class_%d" % C)
                o32 = explain(model, x, C, dtype=torch.float32)
                o64 = explain(model, x, C, dtype=torch.float64)
                logit_err = max(logit_err, rel_err(o32["logits"], np.load(os.path.join(edir, "logits.npy"))))
                for l in range(len(o32["R"])):
                    fn = os.path.join(edir, "attn_cam_%d.npy" % l)
                    if os.path.exists(fn):
                        cam_err = max(cam_err, rel_err(o32["R"][l], np.load(fn)))
                for meth in METHODS:
                    f32 = os.path.join(edir, meth + ".npy")
                    f64 = os.path.join(edir, "f64", meth + ".npy")
                    e32 = np.load(f32) if os.path.exists(f32) else None
                    e64 = np.load(f64) if os.path.exists(f64) else None
                    vals = {}
                    if e32 is not None:
                        vals["32v32"] = rel_err(o32[meth], e32)
                    if e64 is not None:
                        vals["32v64"] = rel_err(o32[meth], e64)
                        vals["64v64"] = rel_err(o64[meth], e64)
                    if meth == "lrp_full":
                        vals.update(r32v64=pearson(o32[meth], e64), r64v64=pearson(o64[meth], e64),
                                    r32v32=pearson(o32[meth], e32))
                    missing = [p for p, e in ((f32, e32), (f64, e64)) if e is None]
                    for p in missing:
                        print("  (no %s; our %s map is %s)" % (p, meth,
                              "all zeros" if not np.any(o64[meth]) else "non-zero"), file=sys.stderr)
                    for k, v in vals.items():
                        key = (k, meth)
                        better_low = not k.startswith("r")
                        if key not in res:
                            res[key] = v
                        else:
                            res[key] = max(res[key], v) if better_low else min(res[key], v)
                    if verbose:
                        print(name, K, C, meth, {k: "%.2e" % v for k, v in vals.items()})
        rows.append((name, res, logit_err, cam_err))
        print("  done %s" % name, file=sys.stderr, flush=True)

    meths = [m for m in METHODS if m != "lrp_full"]
    hdr = "%-26s %-6s " % ("case", "cmp") + " ".join("%10s" % short[m] for m in meths)
    print("max relative error (max|ours - expected| / max|expected|), worst over inputs and classes")
    print("  32v32 = our float32 vs official float32, 32v64 = our float32 vs official float64,")
    print("  64v64 = our float64 vs official float64")
    print(hdr)
    print("-" * len(hdr))
    for name, res, _, _ in rows:
        for k in ("32v32", "32v64", "64v64"):
            print("%-26s %-6s " % (name if k == "32v32" else "", k)
                  + " ".join("%10.2e" % res[(k, m)] for m in meths))
    print()
    print("lrp_full (pixel map), worst over inputs and classes")
    print("%-26s %10s %10s %10s %10s %10s" % ("case", "r 64v64", "r 32v64", "r 32v32",
                                              "rel 64v64", "rel 32v32"))
    for name, res, _, _ in rows:
        print("%-26s %10.6f %10.6f %10.6f %10.2e %10.2e" % (
            name, res[("r64v64", "lrp_full")], res[("r32v64", "lrp_full")],
            res[("r32v32", "lrp_full")], res[("64v64", "lrp_full")], res[("32v32", "lrp_full")]))
    print()
    print("%-26s %12s %16s" % ("case", "logits rel", "attn_cam_l rel"))
    for name, _, le, ce in rows:
        print("%-26s %12.2e %16.2e" % (name, le, ce))
    # verdict: every non-lrp_full method within 1e-3 of official f32 OR f64 (our f32)
    # and our f64 within 1e-3 of f64; lrp_full r >= 0.99 vs f64 (our f64) on fmnist
    print()
    bad = []
    for name, res, le, _ in rows:
        fm = name.startswith("fmnist")
        for m in meths:
            if min(res[("32v32", m)], res[("32v64", m)]) > 1e-3 or res[("64v64", m)] > 1e-3:
                bad.append("%s %s" % (name, m))
        if res[("r64v64", "lrp_full")] < 0.99 or (fm and res[("r32v64", "lrp_full")] < 0.99):
            bad.append("%s lrp_full" % name)
    print("verdict:", "PASS" if not bad else "FAIL: " + ", ".join(bad))
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-oracle", action="store_true", help="reproduce ../shared/oracle/cases")
    ap.add_argument("--oracle", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "..", "..", "shared", "oracle"))
    ap.add_argument("--cases", default="", help="comma-separated subset of cases")
    ap.add_argument("--consumer-rule", choices=["sum", "clone"], default="sum",
                    help="merge of a tensor's consumers' relevances: docs/method.md §3.1's sum (default) or "
                         "the authors' Clone x * sum(sdiv(R_i, x))")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    global CONSUMER_RULE
    CONSUMER_RULE = a.consumer_rule
    if a.check_oracle:
        ok = check_oracle(a.oracle, [c for c in a.cases.split(",") if c], a.verbose)
        sys.exit(0 if ok else 1)
    ap.print_help()


if __name__ == "__main__":
    main()
