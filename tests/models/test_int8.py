"""Dynamic int8 mode: same outputs as fp32 up to quantisation error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aetherscan.models import Fast3R
from aetherscan.models.int8 import int8_supported, quantize_int8

pytestmark = pytest.mark.skipif(not int8_supported(), reason="no FBGEMM/x86 quantised engine")


def test_int8_model_stays_close_to_fp32(tiny_weights: Path, tiny_reference, reference_views):
    views = reference_views("A")
    ids = torch.arange(len(views))
    model = quantize_int8(Fast3R.from_pretrained(tiny_weights))
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    with torch.inference_mode():
        preds = model(views, ids)
    for i in range(len(views)):
        ref = tiny_reference[f"A_sequential_idx_pts3d_local_{i}"]
        err = np.abs(preds[i]["pts3d_local"].numpy() - ref)
        assert np.median(err) < 0.01 * np.median(np.abs(ref))  # measured: 0.1 %
        assert np.median(err) > 0  # it did quantise


def test_int8_refuses_non_fp32(tiny_weights: Path) -> None:
    model = Fast3R.from_pretrained(tiny_weights, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        quantize_int8(model)
