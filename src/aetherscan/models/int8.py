"""Reduced-precision CPU inference for CPUs without fast bf16/fp16 (AVX2 without AVX512-BF16).

On such CPUs bf16 and fp16 matmuls are emulated and run several times slower than fp32, so the
reduced-precision mode that pays off is dynamic int8: weights are quantised once per output
channel, activations per tensor at run time (FBGEMM kernels). Only the transformer Linear layers
(about two thirds of the arithmetic) are converted; attention and the DPT heads stay fp32.
(Dynamic int8 for the heads' 3x3 convolutions was tried: 25 % less head time, but point errors of
the order of the points themselves; see docs/benchmarks.md.)

Uses PyTorch's eager dynamic quantisation (``torch.ao``), which PyTorch marks deprecated in
favour of the separate ``torchao`` package; it works on the pinned torch and is kept behind this
one function so that swapping it is local.
"""

from __future__ import annotations

import gc
import warnings

import torch
from torch import nn

from aetherscan.models.fast3r import Fast3R


def int8_supported() -> bool:
    """Whether this torch build has an x86/FBGEMM quantised CPU engine."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def quantize_int8(model: Fast3R) -> Fast3R:
    """Convert every ``nn.Linear`` of ``model`` (fp32, CPU) to dynamic int8, in place.

    For inference only (no gradients). Returns the model for chaining.
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
        quantized = torch.ao.quantization.quantize_dynamic(
            model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=True
        )
    # The replaced fp32 Linears sit in reference cycles: without a collection their weights stay
    # resident (2.4 GB for ViT-L/512; docs/benchmarks.md, Fast3R memory planner).
    gc.collect()
    return quantized
