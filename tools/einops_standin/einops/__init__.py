"""Stand-in for `einops`, only so that tools/bench can import Chefer et al.'s
baselines/ViT code on a machine without einops. It implements `rearrange`
for exactly the four patterns that code uses and refuses anything else, so a
changed upstream pattern fails loudly instead of reshaping silently wrong.
"""
import torch

__all__ = ["rearrange"]


def _split_qkv(x, qkv, h):  # 'b n (qkv h d) -> qkv b h n d'
    b, n, c = x.shape
    return x.reshape(b, n, qkv, h, c // (qkv * h)).permute(2, 0, 3, 1, 4)


def _merge_heads(x):  # 'b h n d -> b n (h d)'
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _split_heads(x, h):  # 'b n (h d) -> b h n d'
    b, n, c = x.shape
    return x.reshape(b, n, h, c // h).transpose(1, 2)


def _merge_qkv(x, qkv, h):  # 'qkv b h n d -> b n (qkv h d)'
    if isinstance(x, (list, tuple)):
        x = torch.stack(list(x))
    q, b, hh, n, d = x.shape
    if q != qkv or hh != h:
        raise ValueError(f"einops stand-in: shape {tuple(x.shape)} does not match qkv={qkv}, h={h}")
    return x.permute(1, 3, 0, 2, 4).reshape(b, n, qkv * h * d)


def _norm(pattern):
    return " ".join(pattern.replace("(", " ( ").replace(")", " ) ").split())


_PATTERNS = {
    _norm("b n (qkv h d) -> qkv b h n d"): (_split_qkv, ("qkv", "h")),
    _norm("b h n d -> b n (h d)"): (_merge_heads, ()),
    _norm("b n (h d) -> b h n d"): (_split_heads, ("h",)),
    _norm("qkv b h n d -> b n (qkv h d)"): (_merge_qkv, ("qkv", "h")),
}


def rearrange(tensor, pattern, **axes):
    key = _norm(pattern)
    if key not in _PATTERNS:
        raise NotImplementedError(
            f"einops stand-in (tools/einops_standin) does not implement rearrange pattern {pattern!r}; "
            "install the real einops package (pip install einops) to run this code")
    fn, names = _PATTERNS[key]
    if set(axes) != set(names):
        raise TypeError(f"einops stand-in: pattern {pattern!r} expects axis sizes {names}, got {sorted(axes)}")
    if fn is not _merge_qkv and not torch.is_tensor(tensor):
        raise TypeError(f"einops stand-in: pattern {pattern!r} expects a tensor, got {type(tensor).__name__}")
    return fn(tensor, **{k: axes[k] for k in names})
