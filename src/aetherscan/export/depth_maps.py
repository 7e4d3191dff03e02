"""Per-view depth and confidence maps, for the views whose engine made them.

For a photo whose export name (``aetherscan.export.names``) is ``<stem>.jpg`` (the full name
where two photos share a stem, ignoring case; ``_2``, ... added where that still clashes)::

    <folder>/<stem>.npz         depth (h, w) float32, confidence (h, w) float32 where known,
                                K (3, 3) at the map's resolution, cam_from_world (4, 4),
                                photo_size (width, height) of the photo
    <folder>/<stem>.png         16-bit depth: depth = value * depth_step, 0 where unknown
    <folder>/depth.json         depth_step and every view's files, size and K

Depth is the distance along the camera's z axis, in the reconstruction's world unit: metres
where it was scaled (``Reconstruction.unit``), otherwise the engine's own (Fast3R and COLMAP
worlds have no metric scale), as ``unit`` in depth.json says. One ``depth_step`` for
all views, the smallest of 1, 2 or 5 times a power of ten that keeps the largest depth below
65535 steps; it is also in each PNG's ``depth_step`` text chunk. The maps are of the
undistorted photo: ``K`` is a pinhole even where the view has a ``radial_k1``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from aetherscan.export.names import clash_key, export_names, split_extension, unique_names
from aetherscan.reconstruction import Reconstruction, View

_MAX_STEPS = 65535


def has_depth(reconstruction: Reconstruction) -> bool:
    return any(view.depth is not None for view in reconstruction.views)


def depth_step(max_depth: float) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten with max_depth <= 65535 steps."""
    if not max_depth > 0:
        return 1.0
    exponent = math.floor(math.log10(max_depth / _MAX_STEPS))
    for power in (exponent, exponent + 1):
        for mantissa in (1, 2, 5):
            step = mantissa * 10.0**power
            if max_depth / step <= _MAX_STEPS:
                return step
    raise AssertionError("unreachable: 10 ** (exponent + 1) always suffices")


def export_depth_maps(reconstruction: Reconstruction, folder: Path) -> Path:
    """Write every view's depth map as NPZ and 16-bit PNG into ``folder``, with depth.json."""
    names = export_names([view.name for view in reconstruction.views])
    named = [
        (view, name)
        for view, name in zip(reconstruction.views, names, strict=True)
        if view.depth is not None
    ]
    if not named:
        raise ValueError("this reconstruction has no depth maps (its engine made none)")
    for view, _ in named:
        if view.depth_K is None:
            raise ValueError(f"view {view.name!r} has a depth map without its intrinsics depth_K")
    step = depth_step(max(_largest_depth(view.depth) for view, _ in named))
    stems = _file_stems([name for _, name in named])
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for (view, name), stem in zip(named, stems, strict=True):
        _write_npz(view, folder / (stem + ".npz"))
        _write_png(view.depth, step, folder / (stem + ".png"), _unit_words(reconstruction))
        height, width = view.depth.shape
        entries.append(
            {
                "name": view.name,
                "file_name": name,
                "npz": stem + ".npz",
                "png": stem + ".png",
                "width": width,
                "height": height,
                "K": np.asarray(view.depth_K).tolist(),
                "cam_from_world": view.cam_from_world.tolist(),
            }
        )
    index = {
        "depth_step": step,
        "unit": reconstruction.unit,  # "metre" once scaled; None: the engine's arbitrary unit
        "meaning": (
            f"depth along the camera z axis in {_unit_words(reconstruction)} = PNG value * "
            "depth_step; 0 means unknown. K is at the depth map's resolution, pixel (0, 0) "
            "covering [0, 1) x [0, 1), a pinhole: the maps are of the undistorted photo; "
            "cam_from_world in OpenCV axes (docs/exports.md)."
        ),
        "views": entries,
    }
    (folder / "depth.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return folder


def _file_stems(names: list[str]) -> list[str]:
    """File stems for export names: the name without its extension, the whole name where
    two share a stem, made unique where even that clashes."""
    stems = [split_extension(name)[0] for name in names]
    counts = Counter(clash_key(stem) for stem in stems)
    whole = [
        stem if counts[clash_key(stem)] == 1 else name
        for stem, name in zip(stems, names, strict=True)
    ]
    return unique_names(whole)


def _largest_depth(depth: np.ndarray) -> float:
    finite = np.asarray(depth)[np.isfinite(depth)]
    return float(finite.max(initial=0.0))


def _write_npz(view: View, path: Path) -> None:
    arrays = {
        "depth": np.asarray(view.depth, np.float32),
        "K": np.asarray(view.depth_K, np.float64),
        "cam_from_world": np.asarray(view.cam_from_world, np.float64),
        "photo_size": np.array([view.width, view.height], np.int64),
    }
    if view.depth_confidence is not None:
        arrays["confidence"] = np.asarray(view.depth_confidence, np.float32)
    # Uncompressed: float maps gain little from zlib and it costs a tenth of a second a view.
    np.savez(path, **arrays)


def _unit_words(reconstruction: Reconstruction) -> str:
    return "metres" if reconstruction.unit == "metre" else "the reconstruction's world unit"


def _write_png(depth: np.ndarray, step: float, path: Path, unit: str) -> None:
    depth = np.nan_to_num(np.asarray(depth, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    steps = np.clip(np.rint(depth / step), 1, _MAX_STEPS)
    # 0 is kept for "unknown": a known depth below half a step still gets the value 1.
    values = np.where(depth > 0, steps, 0).astype(np.uint16)
    info = PngInfo()
    info.add_text("depth_step", repr(step))
    info.add_text("depth_unit", f"{unit}; depth = value * depth_step")
    Image.fromarray(values).save(path, format="PNG", pnginfo=info)
