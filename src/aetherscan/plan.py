"""``aetherscan plan``: a Fast3R job's predicted peak memory, its chunks, and whether it fits.

Nothing is loaded and nothing is downloaded: the model's config comes from a weights folder on
this machine (``--weights``, or the default hub id when it is in the Hugging Face cache), else
the released ViT-L/512 config is assumed.
"""

from __future__ import annotations

import json
import sys

import torch

from aetherscan.models.fast3r import Fast3RConfig, fast3r_vitl_512_config
from aetherscan.models.hub import DEFAULT_WEIGHTS, find_local_weights
from aetherscan.models.memory import GIB, MemoryPlan, plan_memory, view_shapes
from aetherscan.models.preprocess import input_shapes
from aetherscan.settings import Settings


def model_config(weights: str | None) -> tuple[Fast3RConfig, str]:
    """The config of ``weights`` if it is on this machine, else the released one; and which."""
    folder = find_local_weights(weights or DEFAULT_WEIGHTS)
    if folder is not None:
        config = Fast3RConfig.from_dict(json.loads((folder / "config.json").read_text()))
        return config, f"config of {folder}"
    missing = f"{weights} is not on this machine; " if weights else ""
    return fast3r_vitl_512_config(), f"{missing}the released ViT-L/512 config"


def plan_command(
    views: int,
    image_size: int = 512,
    device: str = "auto",
    dtype: str = "auto",
    memory_gib: float | None = None,
    weights: str | None = None,
) -> int:
    """Print the plan; exit status 0 when the job fits, 1 when it does not, 2 for bad input."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        config, source = model_config(weights)
        memory_bytes = None if memory_gib is None else int(memory_gib * GIB)
        plan = plan_memory(
            config, view_shapes(views, image_size), dtype, device, memory_bytes=memory_bytes
        )
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"aetherscan plan: {exc}", file=sys.stderr)
        return 2
    H, W = plan.shapes[0]
    print(
        f"Fast3R plan: {views} views of {W}x{H} (a 4:3 photo at {image_size}), {plan.dtype} "
        f"on {device}; model: {source}"
    )
    print(plan.report())
    return 0 if plan.fits else 1


def plan_before_loading(
    settings: Settings, photo_sizes: list[tuple[int, int]]
) -> MemoryPlan | None:
    """The memory plan of a job of photos of these (width, height) with ``settings``, before any
    weights are loaded (``aetherscan reconstruct`` refuses with it); None when the settings pick
    another engine than Fast3R."""
    fast3r = settings.engine == "fast3r" or (
        settings.engine == "auto" and find_local_weights(settings.weights) is not None
    )
    if not fast3r:
        return None
    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config, _ = model_config(settings.weights)
    shapes = input_shapes(photo_sizes, settings.image_size)
    return plan_memory(config, shapes, settings.dtype, device)
