"""Transformer pieces shared by the Fast3R encoder and fusion transformer.

Dimension letters: B batch (images or scenes), N tokens, C channels, h heads, d = C / h head dim.

* ``Attention``: multi-head self-attention with an optional 2D rotary embedding on queries and
  keys. ``fused=True`` runs ``torch.nn.functional.scaled_dot_product_attention`` (the fast path);
  ``fused=False`` spells out ``softmax(q k^T * scale) v`` (the reference path the tests compare
  against).
* ``Mlp`` and the pre-norm ``Block`` (``x += attn(norm1(x)); x += mlp(norm2(x))``).
* ``RoPE2D``: rotary position embedding over (row, col) token positions, as in CroCo/DUSt3R: the
  first half of each head's features turns with the row, the second half with the column, and
  within each half the "rotate half" convention (not interleaved pairs) is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RoPE2D:
    """2D rotary position embedding with frequency base ``base`` for heads of size ``head_dim``.

    ``tables(pos)`` computes the cos/sin tables once per token layout; ``apply`` rotates q or k.
    It holds no parameters and is not a module, so the state dict is unaffected.
    """

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        if head_dim % 4 != 0:
            raise ValueError(f"RoPE2D needs a head dim divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = base

    def tables(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """cos and signed sin, each (N, d), for token positions ``pos`` (N, 2) as [row, col].

        Row angles fill the first d/2 features and column angles the last d/2. The sin table
        carries the sign of "rotate half" so that ``apply`` needs one swap, no negation.
        Computed in fp32 whatever the model dtype: angles reach max(h, w) radians.
        """
        if pos.ndim != 2 or pos.shape[1] != 2:
            raise ValueError(f"expected token positions of shape (N, 2), got {tuple(pos.shape)}")
        half = self.head_dim // 2  # features per axis
        exponents = torch.arange(0, half, 2, dtype=torch.float32, device=pos.device) / half
        inv_freq = 1.0 / (self.base**exponents)  # (d/4,)
        angles = pos.to(torch.float32)[:, :, None] * inv_freq  # (N, 2, d/4)
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1).flatten(1)  # (N, d)
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1).flatten(1)  # (N, d)
        return cos, sin

    @staticmethod
    def apply(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate ``t`` (..., d) by tables from ``tables`` broadcast to it; keeps t's dtype.

        Per axis half [a, b] of size d/2: [a, b] * cos + [b, a] * signed sin, which is
        ``t * cos + rotate_half(t) * sin`` with rotate_half([a, b]) = [-b, a].
        """
        t32 = t.float()
        swapped = t32.unflatten(-1, (2, 2, -1)).flip(-2).flatten(-3)  # (..., d): [y2 y1 x2 x1]
        return torch.addcmul(t32 * cos, swapped, sin).to(t.dtype)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` Linear(C, 3C) and ``proj`` Linear(C, C).

    ``scale`` defaults to d^-0.5. ``fused`` picks SDPA (True) or the explicit reference path.
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool = True, fused: bool = True
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        scale_multiplier: float = 1.0,
    ) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # (B, N, 3, h, d)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]  # (B, N, 2, h, d), (B, N, h, d)
        if rope is not None:
            cos, sin = (table[:, None, None, :] for table in rope)  # (N, 1, 1, d)
            qk = RoPE2D.apply(qk, cos, sin)  # q and k in one pass
        q, k = qk.unbind(2)  # 2 x (B, N, h, d)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # 3 x (B, h, N, d)
        scale = self.scale * scale_multiplier
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)  # (B, h, N, d)
        else:
            weights = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)  # (B, h, N, N)
            out = weights @ v  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(B, N, C)  # (B, N, h*d)
        return self.proj(out)


class Mlp(nn.Module):
    """Linear(C, hidden) -> exact GELU -> Linear(hidden, C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, fused=fused)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        scale_multiplier: float = 1.0,
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, scale_multiplier)
        return x + self.mlp(self.norm2(x))
