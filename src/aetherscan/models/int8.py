"""Reduced-precision CPU inference for CPUs without fast bf16/fp16 (AVX2 without AVX512-BF16).

On such CPUs bf16 and fp16 matmuls are emulated and run several times slower than fp32, so the
reduced-precision mode that pays off is dynamic int8: weights of the transformer Linear layers
are quantised once per output channel, activations per tensor at run time (FBGEMM kernels), and
the DPT heads stay fp32. The linears are about two thirds of the model's arithmetic.

Uses PyTorch's eager dynamic quantisation (``torch.ao.quantization.quantize_dynamic``), which
PyTorch marks deprecated in favour of the separate ``torchao`` package; it still works on the
pinned torch and is kept behind this one function so that swapping it is local.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from aetherscan.models.fast3r import Fast3R


def int8_supported() -> bool:
    """Whether this torch build has an x86/FBGEMM quantised CPU engine."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def quantize_linears_int8(model: Fast3R) -> Fast3R:
    """Swap every ``nn.Linear`` of ``model`` (fp32, CPU) for a dynamic int8 Linear, in place.

    For inference only (no gradients); the result is returned for chaining.
    """
    param = model.encoder.patch_embed.proj.weight
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError(
            f"int8 quantisation needs an fp32 model on the CPU, got {param.dtype} on {param.device}"
        )
    if not int8_supported():
        raise RuntimeError(
            "this PyTorch build has no x86/FBGEMM quantised engine; use fp32 on this machine"
        )
    with warnings.catch_warnings():
        # The eager API and quantised tensors are deprecated upstream (see module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(
            model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=True
        )
