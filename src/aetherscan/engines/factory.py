"""``create_engine``: an engine by name (auto, fast3r, colmap) or a plug-in, with its options."""

from __future__ import annotations

import importlib
import logging
from typing import Literal

from aetherscan.engines.base import Engine, EngineError
from aetherscan.models.hub import DEFAULT_WEIGHTS, find_local_weights
from aetherscan.settings import PLUGIN_ENGINE

log = logging.getLogger(__name__)


def resolve_engine(name: str, weights: str) -> Literal["fast3r", "colmap"]:
    """The engine that ``name`` stands for: ``auto`` is Fast3R where its weights are found locally
    (a model folder, or the hub id already in the Hugging Face cache), COLMAP otherwise."""
    if name in ("fast3r", "colmap"):
        return name  # type: ignore[return-value]
    if name != "auto":
        raise EngineError(f"unknown engine {name!r}; choose auto, fast3r or colmap")
    if find_local_weights(weights) is not None:
        return "fast3r"
    log.warning(
        "Fast3R weights %r are not on this machine (none in the Hugging Face cache at HF_HOME, "
        "and no such folder): using the COLMAP engine. Point --weights (AETHERSCAN_WEIGHTS) at a "
        "model folder to use Fast3R.",
        weights,
    )
    return "colmap"


def create_engine(
    name: str = "auto",
    *,
    weights: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    image_size: int = 512,
    min_confidence: float = 1.0,
    max_points_per_view: int | Literal["all"] = 10_000,
    refine_poses: bool = False,
    colmap_max_image_px: int = 1024,
    colmap_threads: int = -1,
) -> Engine:
    """Build the engine ``name`` (auto, fast3r or colmap) with its options, or a plug-in named
    ``package.module:factory`` (a callable with no arguments that returns an Engine)."""
    if PLUGIN_ENGINE.match(name):
        return _plugin_engine(name)

    weights = weights or DEFAULT_WEIGHTS
    resolved = resolve_engine(name, weights)
    if resolved == "fast3r":
        from aetherscan.engines.fast3r import Fast3REngine

        return Fast3REngine(
            weights=weights,
            device=device,
            dtype=dtype,
            image_size=image_size,
            min_confidence=min_confidence,
            max_points_per_view=max_points_per_view,
            refine_poses=refine_poses,
        )
    from aetherscan.engines.colmap import ColmapEngine

    return ColmapEngine(max_image_px=colmap_max_image_px, num_threads=colmap_threads)


def _plugin_engine(spec: str) -> Engine:
    module_name, _, attribute = spec.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"the engine plug-in {spec!r} cannot be loaded: {exc}") from exc
    if not callable(target):
        raise EngineError(f"the engine plug-in {spec!r} is not callable")
    engine = target()
    if not callable(getattr(engine, "reconstruct", None)):
        raise EngineError(f"the engine plug-in {spec!r} made no engine (it has no reconstruct)")
    return engine
