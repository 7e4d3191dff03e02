"""Fixtures for the model tests: the tiny reference model laid out as a weights folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_weights(fast3r_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in Hugging Face layout (config.json + model.safetensors) of the tiny model."""
    folder = tmp_path_factory.mktemp("tiny_fast3r")
    shutil.copy(fast3r_reference / "tiny_config.json", folder / "config.json")
    shutil.copy(fast3r_reference / "tiny_model.safetensors", folder / "model.safetensors")
    return folder


@pytest.fixture(scope="session")
def tiny_reference(fast3r_reference: Path) -> dict[str, np.ndarray]:
    with np.load(fast3r_reference / "tiny_reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="session")
def reference_views(tiny_reference: dict[str, np.ndarray]):
    """``reference_views("A")``: the normalised input views of a reference case, in order."""

    def views(case: str) -> list[torch.Tensor]:
        count = sum(1 for k in tiny_reference if k.startswith(f"{case}_input_img_"))
        return [torch.from_numpy(tiny_reference[f"{case}_input_img_{i}"]) for i in range(count)]

    return views


@pytest.fixture
def nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Input shapes of every NNPACK (Winograd) convolution call while the test runs."""
    calls: list[tuple[int, ...]] = []
    real = torch._nnpack_spatial_convolution

    def spy(x, *args):
        calls.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", spy)
    return calls
