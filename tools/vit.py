#!/usr/bin/python3
"""Plain-PyTorch Vision Transformer, timm-style (as timm 0.4 / Chefer et al.'s
ViT_LRP): Conv patch embedding, CLS token first then patches row-major,
learned pos_embed (initialised with fixed 2-D sin-cos), pre-norm blocks with
fused qkv Linear and `(q @ k.transpose(-2, -1)) * scale` attention, exact erf
GELU, LayerNorm eps 1e-6, head on the CLS token.

Exports with torch.onnx.export at opset 17 (LayerNormalization op) and 13.

    from vit import VisionTransformer
    m = VisionTransformer(img_size=64, patch_size=8, embed_dim=96, depth=4,
                          num_heads=4, num_classes=10, mimetic=True)
"""
import math

import numpy as np
import torch
import torch.nn as nn


class PatchEmbed(nn.Module):
    def __init__(self, img_size=64, patch_size=8, in_chans=3, embed_dim=96):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=4, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


def sincos_2d(dim, grid, temperature=10000.0):
    """MAE-style 2-D sin-cos embedding, (grid*grid, dim), row-major tokens."""
    assert dim % 4 == 0
    gy, gx = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                         indexing="ij")
    q = dim // 4
    omega = 1.0 / temperature ** (np.arange(q, dtype=np.float64) / q)
    oy = gy.reshape(-1)[:, None] * omega[None]
    ox = gx.reshape(-1)[:, None] * omega[None]
    emb = np.concatenate([np.sin(ox), np.cos(ox), np.sin(oy), np.cos(oy)], axis=1)
    return torch.tensor(emb, dtype=torch.float32)


class VisionTransformer(nn.Module):
    def __init__(self, img_size=64, patch_size=8, in_chans=3, num_classes=10, embed_dim=96,
                 depth=4, num_heads=4, mlp_ratio=4.0, qkv_bias=True, eps=1e-6,
                 mimetic=False, mimetic_ab=(0.7, 0.7, 0.4, 0.4), pos_scale=1.0):
        super().__init__()
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, eps=eps)
        self.num_classes = num_classes
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, eps)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init(mimetic, mimetic_ab, pos_scale)

    @torch.no_grad()
    def _init(self, mimetic, ab, pos_scale):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos_embed[0, 1:] = pos_scale * sincos_2d(self.pos_embed.shape[-1], self.patch_embed.grid)
        self.pos_embed[0, :1] = 0.0
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if mimetic:
            for blk in self.blocks:
                mimetic_init_(blk.attn, *ab)

    def forward_features(self, x):
        B = x.shape[0]
        x = self.patch_embed(x)
        cls = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls, x), dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0]

    def forward(self, x):
        return self.head(self.forward_features(x))


@torch.no_grad()
def mimetic_init_(attn, a1=0.7, b1=0.7, a2=0.4, b2=0.4):
    """Trockman & Kolter 2023: per head W_q W_k^T ~ a1 Z + b1 I (attend to
    similar tokens, i.e. positional neighbours), and W_v W_proj ~ a2 Z - b2 I."""
    d = attn.qkv.in_features
    h, k = attn.num_heads, attn.head_dim
    W = attn.qkv.weight  # (3d, d): rows [q; k; v], each head a block of k rows
    for i in range(h):
        M = a1 * torch.randn(d, d) / math.sqrt(d) + b1 * torch.eye(d)
        U, S, Vh = torch.linalg.svd(M)
        s = S[:k].sqrt()
        W[i * k:(i + 1) * k] = (U[:, :k] * s).T          # q = Wq x
        W[d + i * k:d + (i + 1) * k] = (Vh[:k].T * s).T  # k = Wk x ; q.k = x^T U S V^T x
    M = a2 * torch.randn(d, d) / math.sqrt(d) - b2 * torch.eye(d)
    U, S, Vh = torch.linalg.svd(M)
    s = S.sqrt()
    W[2 * d:] = s[:, None] * Vh          # v = (S^1/2 V^T) x
    attn.proj.weight.copy_(U * s)        # proj(v) = U S^1/2 v  => proj.Wv = M


def export_onnx(model, path, opset=17, img_size=64):
    model = model.eval()
    x = torch.zeros(1, 3, img_size, img_size)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"],
                      opset_version=opset, do_constant_folding=True)


if __name__ == "__main__":
    m = VisionTransformer(mimetic=True)
    print(sum(p.numel() for p in m.parameters()), "parameters")
    print(m(torch.randn(2, 3, 64, 64)).shape)
