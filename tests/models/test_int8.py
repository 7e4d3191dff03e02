"""Dynamic int8 mode: same outputs as fp32 up to quantisation error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aetherscan.models import Fast3R
from aetherscan.models.int8 import int8_supported, quantize_int8

pytestmark = pytest.mark.skipif(not int8_supported(), reason="no FBGEMM/x86 quantised engine")


# median |error| / median |fp32 value| of the points; the tiny model's 16-channel DPT heads
# quantise much worse than the ViT-L heads (see docs/benchmarks.md)
@pytest.mark.parametrize(("heads", "max_rel_error"), [(False, 0.01), (True, 0.25)])
def test_int8_model_stays_close_to_fp32(
    tiny_weights: Path, tiny_reference, reference_views, heads: bool, max_rel_error: float
) -> None:
    views = reference_views("A")
    ids = torch.arange(len(views))
    model = quantize_int8(Fast3R.from_pretrained(tiny_weights), heads=heads)
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    head_convs = [m for m in model.downstream_head.modules() if type(m) is torch.nn.Conv2d]
    assert all(m.kernel_size != (3, 3) for m in head_convs) == heads
    with torch.inference_mode():
        preds = model(views, ids)
    for i in range(len(views)):
        ref = tiny_reference[f"A_sequential_idx_pts3d_local_{i}"]
        err = np.abs(preds[i]["pts3d_local"].numpy() - ref)
        assert np.median(err) < max_rel_error * np.median(np.abs(ref))
        assert np.median(err) > 0  # it did quantise


def test_int8_refuses_non_fp32(tiny_weights: Path) -> None:
    model = Fast3R.from_pretrained(tiny_weights, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        quantize_int8(model)
