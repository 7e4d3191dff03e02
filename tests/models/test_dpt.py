"""The DPT head's 3x3 convolution: the Winograd path against the direct one, and when it runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aetherscan.models import dpt
from aetherscan.models.dpt import Conv3x3

needs_nnpack = pytest.mark.skipif(
    not dpt.winograd_available(), reason="this PyTorch build has no NNPACK"
)


def _conv(in_ch: int, out_ch: int, *, bias: bool) -> Conv3x3:
    torch.manual_seed(0)
    conv = Conv3x3(in_ch, out_ch, bias=bias).eval()
    conv.winograd = True
    return conv


def _assert_winograd_close(fast: torch.Tensor, direct: torch.Tensor) -> None:
    """Winograd F(6x6, 3x3) in fp32 rounds more than a direct sum: a few 1e-5 of the output
    scale (a wrong tile or border gives errors of the order of the output itself)."""
    torch.testing.assert_close(fast, direct, rtol=0, atol=5e-5 * float(direct.abs().max()))


@needs_nnpack
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_matches_direct_convolution(bias: bool, nnpack_calls) -> None:
    conv = _conv(48, 40, bias=bias)
    x = torch.randn(3, 48, 37, 61)  # odd sizes: tiles at the borders are partial
    with torch.no_grad():
        fast = conv(x)
        direct = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert nnpack_calls == [(1, 48, 37, 61)] * 3  # one image per call
    assert fast.shape == direct.shape == (3, 40, 37, 61)
    _assert_winograd_close(fast, direct)


@needs_nnpack
def test_non_contiguous_input_is_handled(nnpack_calls) -> None:
    conv = _conv(8, 8, bias=True)
    x = torch.randn(2, 40, 64, 8).permute(0, 3, 1, 2)  # (2, 8, 40, 64), channels last in memory
    with torch.no_grad():
        fast = conv(x)
        direct = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert len(nnpack_calls) == 2
    _assert_winograd_close(fast, direct)


@pytest.mark.parametrize(
    "case",
    ["switched off", "gradient wanted", "bf16", "fp64", "small map"],
    ids=lambda c: c.replace(" ", "-"),
)
def test_direct_path_where_winograd_does_not_apply(case: str, nnpack_calls) -> None:
    conv = _conv(8, 8, bias=True)
    x = torch.randn(2, 8, 40, 64)  # 2560 pixels: large enough
    if case == "small map":
        x = torch.randn(2, 8, 32, 63)  # one pixel short of 2048
    elif case == "switched off":
        conv.winograd = False
    elif case == "bf16":
        conv, x = conv.to(torch.bfloat16), x.to(torch.bfloat16)
    elif case == "fp64":
        conv, x = conv.double(), x.double()
    with torch.set_grad_enabled(case == "gradient wanted"):
        out = conv(x)
    assert nnpack_calls == []
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=1))
    if case == "gradient wanted":
        out.sum().backward()
        assert conv.weight.grad is not None
