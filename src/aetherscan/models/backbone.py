"""The two transformers of Fast3R: the per-view encoder and the all-views fusion transformer.

Dimension letters: B batch, V views, N tokens (one view: N = h*w), C channels, H, W pixels,
h = H / patch, w = W / patch. Module names follow the released checkpoint (``encoder.*``,
``decoder.*``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch
from torch import Tensor, nn

from aetherscan.models.blocks import Block, RoPE2D

IMAGE_IDX_TABLE_ROWS = 1000  # rows of the image-index table = most views per forward pass
# With attn_bias_for_inference_enabled, eval-mode fusion attention is sharpened by this factor.
INFERENCE_ATTN_SCALE = math.sqrt(math.log(137) / math.log(20))


# ---------------------------------------------------------------------------------- encoder


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens; no norm, no absolute position embedding."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, H, W) -> tokens (B, h*w, C) row-major, positions (h*w, 2) as [row, col]."""
        fmap = self.proj(images)  # (B, C, h, w)
        h, w = fmap.shape[-2:]
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h*w, C)
        rows = torch.arange(h, device=images.device)
        cols = torch.arange(w, device=images.device)
        pos = torch.cartesian_prod(rows, cols)  # (h*w, 2)
        return tokens, pos


class Encoder(nn.Module):
    """CroCo/DUSt3R ViT: patch embed, pre-norm blocks with 2D RoPE, final LayerNorm."""

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        patch_size: int,
        rope_base: float,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.enc_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, norm_eps=1e-6) for _ in range(depth)
        )
        self.enc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.rope = RoPE2D(embed_dim // num_heads, rope_base)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, H, W) -> tokens (B, N, C), positions (N, 2)."""
        x, pos = self.patch_embed(images)
        rope = self.rope.tables(pos)
        for block in self.enc_blocks:
            x = block(x, rope)
        return self.enc_norm(x), pos


# ---------------------------------------------------------------------------------- fusion


def image_idx_table(rows: int, dim: int, device: torch.device | str | None = None) -> Tensor:
    """1-D sin/cos table (rows, dim): row i = [sin(i w_k), cos(i w_k)], w_k = 10000^(-2k/dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=device) / (dim / 2))
    angles = (
        torch.arange(rows, dtype=torch.float64, device=device)[:, None] * omega
    )  # (rows, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (rows, dim)


def draw_image_ids(
    num_views: int, *, random: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Image-index rows for ``num_views`` views, (V,) int64.

    ``random``: view 0 gets 0 (it defines the world frame), the others distinct random rows from
    1..999, drawn as the original does: a seed from the global torch RNG (so ``torch.manual_seed``
    reproduces it) unless ``generator`` is given. Otherwise rows 0..V-1.
    """
    if num_views > IMAGE_IDX_TABLE_ROWS:
        raise ValueError(
            f"Fast3R takes at most {IMAGE_IDX_TABLE_ROWS} views in one forward pass (its "
            f"image-index table has {IMAGE_IDX_TABLE_ROWS} rows); got {num_views}"
        )
    if not random:
        return torch.arange(num_views)
    if generator is None:
        seed = int(torch.randint(0, 2**32, (1,)))
        generator = torch.Generator().manual_seed(seed)
    others = torch.randperm(IMAGE_IDX_TABLE_ROWS - 1, generator=generator)[: num_views - 1] + 1
    return torch.cat([torch.zeros(1, dtype=torch.int64), others])


class FusionTransformer(nn.Module):
    """All views' tokens attend to each other; checkpoint prefix ``decoder.``."""

    def __init__(
        self,
        *,
        enc_dim: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        sharpen_in_eval: bool,
    ) -> None:
        super().__init__()
        self.sharpen_in_eval = sharpen_in_eval  # config: attn_bias_for_inference_enabled
        self.decoder_embed = nn.Linear(enc_dim, embed_dim)
        self.dec_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm_eps=1e-5)
            for _ in range(depth)
        )
        self.dec_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.register_buffer(
            "image_idx_emb", image_idx_table(IMAGE_IDX_TABLE_ROWS, embed_dim), persistent=False
        )

    def forward(
        self, tokens: Sequence[Tensor], image_ids: Tensor, keep: Collection[int]
    ) -> dict[int, Tensor]:
        """``tokens``: per view (B, N_v, C_enc); ``image_ids`` (V,).

        Returns the stages listed in ``keep`` from [0 = concatenated encoder tokens,
        k = output of block k, depth = dec_norm(last block)], each (B, sum N_v, C).
        """
        counts = torch.tensor([t.shape[1] for t in tokens], device=image_ids.device)
        x = torch.cat(list(tokens), dim=1)  # (B, sum N_v, C_enc)
        kept = {0: x} if 0 in keep else {}
        emb = self.image_idx_emb[image_ids].repeat_interleave(counts, dim=0)  # (sum N_v, C)
        x = self.decoder_embed(x) + emb.to(x.dtype)  # (B, sum N_v, C)
        sharpen = self.sharpen_in_eval and not self.training
        scale_multiplier = INFERENCE_ATTN_SCALE if sharpen else 1.0
        depth = len(self.dec_blocks)
        for k, block in enumerate(self.dec_blocks, start=1):
            x = block(x, scale_multiplier=scale_multiplier)
            if k == depth:
                x = self.dec_norm(x)
            if k in keep:
                kept[k] = x
        return kept
