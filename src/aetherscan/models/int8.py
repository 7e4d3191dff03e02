"""Reduced-precision CPU inference for CPUs without fast bf16/fp16 (AVX2 without AVX512-BF16).

On such CPUs bf16 and fp16 matmuls are emulated and run several times slower than fp32, so the
reduced-precision mode that pays off is dynamic int8: weights are quantised once per output
channel, activations per tensor at run time (FBGEMM kernels). The transformer Linear layers
(about two thirds of the arithmetic) are always converted; the 3x3 convolutions of the DPT heads
only with ``heads=True``, which saves more time and costs more accuracy. Attention stays fp32.

Uses PyTorch's eager dynamic quantisation (``torch.ao``), which PyTorch marks deprecated in
favour of the separate ``torchao`` package; it works on the pinned torch and is kept behind this
one function so that swapping it is local.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from aetherscan.models.fast3r import Fast3R


def int8_supported() -> bool:
    """Whether this torch build has an x86/FBGEMM quantised CPU engine."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def quantize_int8(model: Fast3R, *, heads: bool = False) -> Fast3R:
    """Convert ``model`` (fp32, CPU) to dynamic int8 in place, for inference only.

    Every ``nn.Linear`` becomes a dynamic int8 Linear; with ``heads`` the 3x3 convolutions of
    the DPT heads become dynamic int8 convolutions too. Returns the model for chaining.
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
    from torch.ao.nn.quantized import dynamic as qdynamic
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # The eager API and quantised tensors are deprecated upstream (see module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=True)
        if heads:
            for head in model._heads().values():
                for parent in list(head.modules()):
                    for name, child in list(parent.named_children()):
                        if type(child) is nn.Conv2d and child.kernel_size == (3, 3):
                            child.qconfig = default_dynamic_qconfig
                            setattr(parent, name, qdynamic.Conv2d.from_float(child))
    return model
