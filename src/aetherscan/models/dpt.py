"""DPT head (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021) as used by
DUSt3R and Fast3R: four token maps from chosen transformer layers are brought to four scales,
fused coarse to fine by RefineNet-style blocks, and turned into a dense per-pixel output.

Dimension letters: B images, N = h*w tokens of one image, C channels, H, W pixels,
h = H / patch, w = W / patch token grid.

Module names follow the released checkpoint (``dpt.act_postprocess``, ``dpt.scratch``,
``dpt.head``) so its weights load unchanged.

The 3x3 stride-1 convolutions carry most of the head's arithmetic. On the CPU in fp32 the large
ones can run as Winograd F(6x6, 3x3) convolutions (NNPACK, part of PyTorch's CPU builds): 2 to 3
times faster than the direct oneDNN kernels on maps of 48x64 pixels and more, with a relative
error of a few 1e-5 per convolution (docs/benchmarks.md). ``Conv3x3.winograd`` turns it on per
layer; ``Fast3R.winograd_convolutions`` sets it for the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _upsample2x(x: Tensor) -> Tensor:
    """Bilinear x2 with align_corners=True (what the checkpoint was trained with)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


# Below this many pixels per map the direct kernel wins (measured on 2 AVX2 cores: 12x16 and
# 24x32 maps are faster direct, 48x64 and larger faster as Winograd).
WINOGRAD_MIN_PIXELS = 2048


@cache
def winograd_available() -> bool:
    """Whether this PyTorch build has NNPACK. The first call also initialises NNPACK."""
    return hasattr(torch, "_nnpack_spatial_convolution") and bool(torch._nnpack_available())


class Conv3x3(nn.Conv2d):
    """3x3 convolution, stride 1, padding 1 (same size out), with an optional Winograd path.

    The Winograd path runs only where it applies and pays (CPU, fp32, no gradient wanted, NNPACK
    present, maps of at least ``WINOGRAD_MIN_PIXELS``); anywhere else the layer is an ordinary
    ``nn.Conv2d``, so GPU and bf16 runs and the state dict are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.winograd = False

    def forward(self, x: Tensor) -> Tensor:
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        fits = (
            x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and x.shape[-2] * x.shape[-1] >= WINOGRAD_MIN_PIXELS
        )
        if not (self.winograd and fits and not wants_grad and winograd_available()):
            return super().forward(x)
        # One image per call: NNPACK's batched algorithm is the training one, and 3x slower.
        outs = [
            torch._nnpack_spatial_convolution(
                image[None].contiguous(), self.weight, self.bias, [1, 1], [1, 1]
            )
            for image in x
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)  # (B, C_out, H, W)


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convs that keep C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3x3(channels, channels)
        self.conv2 = Conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out, inplace=True))
        return out + x


class FusionBlock(nn.Module):
    """Merge a coarser path with a skip connection, then upsample x2 and mix with a 1x1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, path: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        # A 1x1 conv commutes with bilinear upsampling (weights per pixel sum to 1), so
        # mixing channels first gives the same result at a quarter of the cost.
        return _upsample2x(self.out_conv(path))


class Scratch(nn.Module):
    """Projection of the four scales to a common width, and the four fusion blocks.

    ``layer{1..4}_rn`` are 3x3 convs without bias. The original also registers them a second time
    as ``layer_rn.{0..3}``; the loader maps that spelling onto these names instead of
    keeping a duplicate in the state dict.
    """

    def __init__(self, layer_dims: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        for i, dim in enumerate(layer_dims, start=1):
            conv = Conv3x3(dim, feature_dim, bias=False)
            self.add_module(f"layer{i}_rn", conv)
        for i in range(1, 5):
            self.add_module(f"refinenet{i}", FusionBlock(feature_dim))

    def layer_rn(self, i: int) -> Conv3x3:
        return getattr(self, f"layer{i + 1}_rn")

    def refinenet(self, i: int) -> FusionBlock:
        return getattr(self, f"refinenet{i + 1}")


class DPTAdapter(nn.Module):
    """The DPT network proper (checkpoint prefix ``dpt.``)."""

    def __init__(
        self,
        *,
        dim_tokens: Sequence[int],
        layer_dims: Sequence[int],
        feature_dim: int,
        last_dim: int,
        patch_size: int,
        num_channels: int,
    ) -> None:
        super().__init__()
        if len(dim_tokens) != 4 or len(layer_dims) != 4:
            raise ValueError(
                f"DPT needs 4 hooked layers and 4 layer dims, got {len(dim_tokens)} and "
                f"{len(layer_dims)}"
            )
        if patch_size % 8 != 0:
            raise ValueError(f"DPT expects a patch size divisible by 8, got {patch_size}")
        self.patch_size = patch_size
        d0, d1, d2, d3 = layer_dims
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(  # x4 up
                    nn.Conv2d(dim_tokens[0], d0, kernel_size=1),
                    nn.ConvTranspose2d(d0, d0, kernel_size=4, stride=4),
                ),
                nn.Sequential(  # x2 up
                    nn.Conv2d(dim_tokens[1], d1, kernel_size=1),
                    nn.ConvTranspose2d(d1, d1, kernel_size=2, stride=2),
                ),
                nn.Sequential(nn.Conv2d(dim_tokens[2], d2, kernel_size=1)),  # x1
                nn.Sequential(  # x1/2
                    nn.Conv2d(dim_tokens[3], d3, kernel_size=1),
                    nn.Conv2d(d3, d3, kernel_size=3, stride=2, padding=1),
                ),
            ]
        )
        self.scratch = Scratch(layer_dims, feature_dim)
        # The fused map sits at H/2 for patch 16 (token grid x8); the head brings it to H.
        self.head = nn.Sequential(
            Conv3x3(feature_dim, feature_dim // 2),
            nn.Upsample(scale_factor=patch_size / 8, mode="bilinear", align_corners=True),
            Conv3x3(feature_dim // 2, last_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(last_dim, num_channels, kernel_size=1),
        )

    def forward(self, layers: Sequence[Tensor], grid_hw: tuple[int, int]) -> Tensor:
        """``layers``: 4 token maps (B, N, C_i) with N = h*w; returns (B, num_channels, H, W)."""
        h, w = grid_hw
        maps = []
        for i, tokens in enumerate(layers):
            B, N, C = tokens.shape
            if tokens.shape[1] != h * w:
                raise ValueError(f"hooked layer {i} has {N} tokens, expected {h}x{w}={h * w}")
            fmap = tokens.transpose(1, 2).reshape(B, C, h, w)  # (B, C_i, h, w)
            fmap = self.act_postprocess[i](fmap)  # (B, layer_dims[i], h*4 / h*2 / h / h/2, ...)
            maps.append(self.scratch.layer_rn(i)(fmap))  # (B, feature_dim, same)
        path = self.scratch.refinenet(3)(maps[3])  # (B, F, 2*ceil(h/2), 2*ceil(w/2))
        path = path[:, :, : maps[2].shape[2], : maps[2].shape[3]]  # (B, F, h, w)
        path = self.scratch.refinenet(2)(path, maps[2])  # (B, F, 2h, 2w)
        path = self.scratch.refinenet(1)(path, maps[1])  # (B, F, 4h, 4w)
        path = self.scratch.refinenet(0)(path, maps[0])  # (B, F, 8h, 8w)
        return self.head(path)  # (B, num_channels, H, W)


class DPTHead(nn.Module):
    """A DPT head shared by all views; ``forward`` takes views of one shape, chunked.

    ``hooks`` index the list [encoder tokens, fusion block 1, ..., fusion block L (normed)].
    Views are processed ``chunk_views`` images at a time so that the head's memory, its largest
    consumer, stays flat as the number of views grows. ``None`` picks one image at a time on the
    CPU (its kernels gain nothing from batches, and the Winograd path runs per image) and 8 on
    accelerators.
    """

    def __init__(
        self,
        *,
        hooks: Sequence[int],
        dim_tokens: Sequence[int],
        layer_dims: Sequence[int],
        feature_dim: int,
        last_dim: int,
        patch_size: int,
        num_channels: int = 4,
        chunk_views: int | None = None,
    ) -> None:
        super().__init__()
        self.hooks = tuple(hooks)
        self.chunk_views = chunk_views
        self.dpt = DPTAdapter(
            dim_tokens=dim_tokens,
            layer_dims=layer_dims,
            feature_dim=feature_dim,
            last_dim=last_dim,
            patch_size=patch_size,
            num_channels=num_channels,
        )

    def forward(self, layers: Sequence[Tensor], image_hw: tuple[int, int]) -> Tensor:
        """``layers``: the 4 hooked token maps (B, N, C_i) of B images of size ``image_hw``.

        Returns the raw output (B, num_channels, H, W) before any activation.
        """
        H, W = image_hw
        patch = self.dpt.patch_size
        if H % patch or W % patch:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {patch}")
        grid_hw = (H // patch, W // patch)
        B = layers[0].shape[0]
        chunk = self.chunk_views or (1 if layers[0].device.type == "cpu" else 8)
        chunks = [
            self.dpt([t[start : start + chunk] for t in layers], grid_hw)
            for start in range(0, B, chunk)
        ]
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]  # (B, num_channels, H, W)
