"""Attention layers over the pixels of a feature map, the ``attention`` / ``mid_attention`` types.

- ``full``: multi-head softmax self-attention with GroupNorm pre-norm and a zero-initialised
  output projection in a residual (Vaswani et al. 2017; the DDPM/ADM attention block),
  computed by ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
- ``linear``: linear attention with the ``elu + 1`` feature map (Katharopoulos et al. 2020,
  "Transformers are RNNs", arXiv:2006.16236), O(HW) time and memory.
- ``transformer``: a DiT block (Peebles & Xie 2023, arXiv:2212.09748): attention + MLP with
  adaLN-Zero conditioning on the time embedding, so the block starts as the identity.

All take ``forward(x (B, C, H, W), emb (B, E)) -> (B, C, H, W)``; the first two ignore ``emb``.
The caller chooses ``heads`` (the U-Net uses ``UNetSpec.attention_heads``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks.layers import zero_init_

__all__ = ["LinearAttention", "SelfAttention", "TransformerBlock"]


def _check_heads(channels: int, heads: int) -> None:
    if heads < 1 or channels % heads:
        raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")


def _without_autocast(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Disable autocast on devices that have it (the ``meta`` device, used to count MACs, has not)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3C, H, W) -> three (B, heads, C // heads, H*W) tensors.

    ``reshape`` rather than ``view``: a channels-last input is not contiguous in this order.
    """
    b, c3, hgt, wid = qkv.shape
    q, k, v = qkv.reshape(b, 3, heads, c3 // (3 * heads), hgt * wid).unbind(dim=1)
    return q, k, v


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention over all pixels, pre-GroupNorm, residual."""

    def __init__(self, channels: int, *, heads: int, norm_groups: int) -> None:
        super().__init__()
        _check_heads(channels, heads)
        self.heads = heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = _split_heads(self.qkv(self.norm(x)), self.heads)    # (B, heads, d, N) each
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )                                                              # (B, heads, N, d)
        out = out.transpose(-1, -2).reshape(b, c, hgt, wid)
        return x + self.proj(out)


class LinearAttention(nn.Module):
    """Katharopoulos linear attention: ``phi(q)^T (sum_j phi(k_j) v_j^T) / phi(q)^T sum_j phi(k_j)``.

    ``phi(x) = elu(x) + 1`` keeps every similarity positive, so the normaliser never
    vanishes.  The sums over pixels run in float32 because they grow with H*W.
    """

    def __init__(self, channels: int, *, heads: int, norm_groups: int, eps: float = 1e-6) -> None:
        super().__init__()
        _check_heads(channels, heads)
        self.heads = heads
        self.eps = eps
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, hgt, wid = x.shape
        qkv = self.qkv(self.norm(x))
        # autocast would run the einsums in half precision; the pixel sums need float32.
        with _without_autocast(x.device.type):
            q, k, v = (t.float() for t in _split_heads(qkv, self.heads))
            q, k = F.elu(q) + 1, F.elu(k) + 1                          # (B, heads, d, N)
            kv = torch.einsum("bhdn,bhen->bhde", k, v)                 # (B, heads, d, d): O(N)
            norm = torch.einsum("bhdn,bhd->bhn", q, k.sum(dim=-1))     # (B, heads, N)
            out = torch.einsum("bhdn,bhde->bhen", q, kv) / (norm[:, :, None, :] + self.eps)
        out = out.to(qkv.dtype).reshape(b, c, hgt, wid)
        return x + self.proj(out)


class TransformerBlock(nn.Module):
    """DiT block: ``x + g1 * Attn(mod(LN(x)))``, then ``x + g2 * MLP(mod(LN(x)))``.

    The shift, scale and gate of both halves come from the time embedding through a
    zero-initialised linear layer (adaLN-Zero), so the gates start at zero.
    """

    def __init__(self, channels: int, *, heads: int, emb_channels: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        _check_heads(channels, heads)
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * channels, channels),
        )
        self.modulation = nn.Sequential(nn.SiLU(), zero_init_(nn.Linear(emb_channels, 6 * channels)))

    def _attention(self, tokens: Tensor) -> Tensor:
        b, n, c = tokens.shape
        qkv = self.qkv(tokens).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)               # (B, heads, N, d) each
        out = F.scaled_dot_product_attention(q, k, v)                  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        tokens = x.flatten(2).transpose(1, 2)                          # (B, N, C)
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            self.modulation(emb)[:, None, :].chunk(6, dim=-1)          # each (B, 1, C)
        )
        tokens = tokens + gate1 * self._attention(self.norm1(tokens) * (1 + scale1) + shift1)
        tokens = tokens + gate2 * self.mlp(self.norm2(tokens) * (1 + scale2) + shift2)
        return tokens.transpose(1, 2).reshape(b, c, hgt, wid)
