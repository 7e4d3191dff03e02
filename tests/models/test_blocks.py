"""Attention fast path vs reference path, and the 2D RoPE."""

from __future__ import annotations

import pytest
import torch

from aetherscan.models.blocks import Attention, RoPE2D


@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)]
)
@pytest.mark.parametrize("with_rope", [False, True])
def test_sdpa_matches_reference_attention(dtype: torch.dtype, atol: float, with_rope: bool):
    torch.manual_seed(0)
    attn = Attention(64, 4).to(dtype)
    x = torch.randn(2, 30, 64, dtype=dtype)
    rope = None
    if with_rope:
        pos = torch.cartesian_prod(torch.arange(5), torch.arange(6))  # (30, 2)
        rope = RoPE2D(16).tables(pos)
    with torch.no_grad():
        fused = attn(x, rope, scale_multiplier=1.3)
        attn.fused = False
        plain = attn(x, rope, scale_multiplier=1.3)
    assert fused.dtype == dtype
    torch.testing.assert_close(fused.float(), plain.float(), rtol=0, atol=atol)


def test_rope_scores_depend_only_on_relative_position() -> None:
    """<R(p) q, R(p') k> depends on p - p' only: shifting all positions keeps the scores."""
    torch.manual_seed(0)
    rope = RoPE2D(16, base=100.0)
    q, k = torch.randn(2, 1, 1, 12, 16).unbind(0)  # (1, 1, 12, 16) each
    pos = torch.randint(0, 20, (12, 2))

    def scores(p: torch.Tensor) -> torch.Tensor:
        cos, sin = rope.tables(p)
        return RoPE2D.apply(q, cos, sin) @ RoPE2D.apply(k, cos, sin).transpose(-2, -1)

    torch.testing.assert_close(scores(pos), scores(pos + torch.tensor([3, 7])))
    assert not torch.allclose(scores(pos), scores(pos.flip(1)), atol=1e-3)  # rows != cols


def test_rope_leaves_norms_and_position_zero_alone() -> None:
    t = torch.randn(1, 2, 4, 8)
    cos, sin = RoPE2D(8).tables(torch.tensor([[0, 0], [1, 2], [5, 3], [9, 9]]))
    out = RoPE2D.apply(t, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), t.norm(dim=-1))
    torch.testing.assert_close(out[:, :, 0], t[:, :, 0])


def test_rope_matches_the_rotate_half_definition() -> None:
    """Each axis half t of size D turns as t*cos + rotate_half(t)*sin, rotate_half = [-b, a],
    with angles pos * 100^(-2i/D) repeated twice; rows drive the first half."""
    d, D = 16, 8
    t = torch.randn(1, 1, 3, d)
    pos = torch.tensor([[0, 5], [2, 1], [7, 3]])
    out = RoPE2D.apply(t, *RoPE2D(d, base=100.0).tables(pos))
    inv_freq = 100.0 ** (-torch.arange(0, D, 2).float() / D)
    for axis, half in enumerate(t.split(D, dim=-1)):
        theta = pos[:, axis, None].float() * inv_freq  # (3, D/2)
        cos, sin = torch.cat([theta, theta], -1).cos(), torch.cat([theta, theta], -1).sin()
        a, b = half.split(D // 2, dim=-1)
        expected = half * cos + torch.cat([-b, a], dim=-1) * sin
        torch.testing.assert_close(out[..., axis * D : (axis + 1) * D], expected)
