"""The one result type that every engine returns and every consumer reads.

Conventions, once for the whole code base (see docs/exports.md):

* ``cam_from_world`` is a 4x4 float64 matrix mapping world points to camera coordinates,
  ``X_cam = R @ X_world + t``, in OpenCV camera axes: x right, y down, z forward.
* ``K`` is the 3x3 pinhole intrinsic matrix in pixels of the ORIGINAL photo, after its EXIF
  orientation is applied (``width`` x ``height``), with the pixel-centre convention that pixel
  (0, 0) covers [0, 1) x [0, 1), so the centre of the image is at (width / 2, height / 2).
* The world frame and its scale are whatever the engine produced (Fast3R: the first photo's
  camera; COLMAP: its own), the same for all views of one reconstruction; ``unit`` is None
  then. ``Reconstruction.scaled`` gives the same scene in a known unit (``"metre"``).
* ``confidence`` is higher-is-better and at least 1 for kept points, for either engine.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from aetherscan.mesh import Mesh


@dataclass
class PointCloud:
    """A coloured point cloud: N points with position, colour, confidence and source view."""

    xyz: np.ndarray  # (N, 3) float32, world frame
    rgb: np.ndarray  # (N, 3) uint8
    confidence: np.ndarray  # (N,) float32
    view_index: np.ndarray  # (N,) int32, index into Reconstruction.views

    def __post_init__(self) -> None:
        n = len(self.xyz)
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3):
            raise ValueError(
                f"expected xyz and rgb of shape (N, 3), got {self.xyz.shape}, {self.rgb.shape}"
            )
        if self.confidence.shape != (n,) or self.view_index.shape != (n,):
            raise ValueError(
                f"expected confidence and view_index of shape ({n},), "
                f"got {self.confidence.shape}, {self.view_index.shape}"
            )

    def __len__(self) -> int:
        return len(self.xyz)

    @classmethod
    def empty(cls) -> PointCloud:
        return cls(
            xyz=np.zeros((0, 3), np.float32),
            rgb=np.zeros((0, 3), np.uint8),
            confidence=np.zeros((0,), np.float32),
            view_index=np.zeros((0,), np.int32),
        )

    @classmethod
    def concatenate(cls, clouds: Sequence[PointCloud]) -> PointCloud:
        if not clouds:
            return cls.empty()
        return cls(
            xyz=np.concatenate([c.xyz for c in clouds]),
            rgb=np.concatenate([c.rgb for c in clouds]),
            confidence=np.concatenate([c.confidence for c in clouds]),
            view_index=np.concatenate([c.view_index for c in clouds]),
        )

    def select(self, mask: np.ndarray) -> PointCloud:
        return PointCloud(
            self.xyz[mask], self.rgb[mask], self.confidence[mask], self.view_index[mask]
        )


@dataclass
class View:
    """One registered photo: its camera and the points the engine attributes to it."""

    name: str  # the photo's label (client filename), never a path on disk
    width: int  # original photo size in pixels, after EXIF orientation
    height: int
    K: np.ndarray  # (3, 3) float64 intrinsics at the original resolution
    cam_from_world: np.ndarray  # (4, 4) float64, OpenCV axes
    points: np.ndarray  # (N, 3) float32, world frame
    colors: np.ndarray  # (N, 3) uint8
    confidence: np.ndarray  # (N,) float32
    # Optional dense maps (engines that have them): depth along the camera z axis, at a resolution
    # of its own, with the intrinsics of that resolution in depth_K.
    depth: np.ndarray | None = None  # (h, w) float32, 0 where unknown
    depth_confidence: np.ndarray | None = None  # (h, w) float32
    depth_K: np.ndarray | None = None  # (3, 3) float64
    # Radial distortion of the photo (COLMAP's SIMPLE_RADIAL k): a point at (x, y) on the plane
    # z = 1 of the camera is seen at the pixel K @ (d x, d y, 1), d = 1 + radial_k1 (x^2 + y^2),
    # K being the pinhole part. 0 for a pinhole camera (Fast3R). Depth maps are undistorted.
    radial_k1: float = 0.0

    @property
    def world_from_cam(self) -> np.ndarray:
        return np.linalg.inv(self.cam_from_world)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R, t = self.cam_from_world[:3, :3], self.cam_from_world[:3, 3]
        return -R.T @ t

    @property
    def focal_px(self) -> tuple[float, float]:
        return float(self.K[0, 0]), float(self.K[1, 1])


@dataclass
class DroppedPhoto:
    """A photo that is not in the result, with the reason in words a person understands."""

    name: str
    reason: str


@dataclass
class Quality:
    """The engine's verdict on its own result, for people: ``good`` when every check it ran
    passed, ``uncertain`` otherwise, with one sentence per failed check in ``reasons``.

    A wrong model presented as a success is the worst outcome for a user, so an engine that has
    not checked its result says ``uncertain``; ``good`` may still carry sentences that are worth
    knowing but do not cast doubt on the poses (a note, not a reason for doubt).
    """

    verdict: Literal["good", "uncertain"]
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in ("good", "uncertain"):
            raise ValueError(f"verdict must be 'good' or 'uncertain', got {self.verdict!r}")

    @classmethod
    def unchecked(cls) -> Quality:
        return cls("uncertain", ["the engine did not check this result"])

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: dict) -> Quality:
        return cls(data["verdict"], list(data.get("reasons", [])))


# Where the masks of a reconstruction came from: none used, given with the photos (uploaded
# files or alpha channels), estimated by the engine, or given for some photos and estimated for
# the others.
MASK_SOURCES = ("none", "given", "automatic", "mixed")


@dataclass
class Reconstruction:
    """Cameras and coloured points of one scene."""

    engine: str
    views: list[View]
    dropped: list[DroppedPhoto] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    quality: Quality = field(default_factory=Quality.unchecked)
    masks: str = "none"  # one of MASK_SOURCES
    unit: str | None = None  # the world's unit: None for the engine's own, or "metre"
    # Each view's photo file, by view name, where known: ``aetherscan.reconstruct`` fills it in,
    # so that the exports with photos find them. Not saved with the reconstruction.
    photo_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return sum(len(v.points) for v in self.views)

    def point_cloud(self, min_confidence: float = 0.0) -> PointCloud:
        """All views' points in one cloud, keeping those with confidence >= min_confidence."""
        clouds = []
        for i, view in enumerate(self.views):
            keep = view.confidence >= min_confidence
            clouds.append(
                PointCloud(
                    xyz=view.points[keep],
                    rgb=view.colors[keep],
                    confidence=view.confidence[keep],
                    view_index=np.full(int(keep.sum()), i, np.int32),
                )
            )
        return PointCloud.concatenate(clouds)

    def scaled(self, factor: float, unit: str | None = None) -> Reconstruction:
        """The same scene with every length times ``factor``, in ``unit`` (None: no known unit):
        points, camera translations (``cam_from_world[:3, 3]``) and depth maps are multiplied;
        intrinsics, rotations, colours and confidences stay. Every pixel a camera sees of a point
        is the same before and after. A new Reconstruction; this one is left as it is."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"a scale factor must be a positive finite number, got {factor!r}")
        return dataclasses.replace(
            self,
            views=[_scaled_view(view, float(factor)) for view in self.views],
            dropped=list(self.dropped),
            timings_s=dict(self.timings_s),
            unit=unit,
            photo_paths=dict(self.photo_paths),
        )

    def mesh(self) -> Mesh:
        """The surface of the points as a triangle mesh with vertex colours (``aetherscan.mesh``:
        screened Poisson, trimmed where no point supports it), made on the first call and kept
        with this object. MeshError (a ValueError) when the points are too few."""
        from aetherscan.export import mesh_of

        return mesh_of(self)

    def view_cloud(self, index: int) -> PointCloud:
        view = self.views[index]
        return PointCloud(
            view.points, view.colors, view.confidence, np.full(len(view.points), index, np.int32)
        )


def _scaled_view(view: View, factor: float) -> View:
    cam_from_world = view.cam_from_world.copy()
    cam_from_world[:3, 3] *= factor
    return dataclasses.replace(
        view,
        cam_from_world=cam_from_world,
        points=(view.points * np.float32(factor)).astype(np.float32),
        depth=None if view.depth is None else (view.depth * np.float32(factor)).astype(np.float32),
    )


_VIEW_ARRAYS = ("K", "cam_from_world", "points", "colors", "confidence")
_VIEW_MAPS = ("depth", "depth_confidence", "depth_K")


def save_reconstruction(reconstruction: Reconstruction, path: Path) -> None:
    """Write a Reconstruction to one .npz file (arrays) with a JSON header; load_reconstruction reads it."""
    arrays: dict[str, Any] = {}
    header: dict[str, Any] = {
        "engine": reconstruction.engine,
        "timings_s": reconstruction.timings_s,
        "dropped": [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped],
        "quality": reconstruction.quality.to_json(),
        "masks": reconstruction.masks,
        "unit": reconstruction.unit,
        "views": [],
    }
    for i, view in enumerate(reconstruction.views):
        header["views"].append(
            {
                "name": view.name,
                "width": view.width,
                "height": view.height,
                "radial_k1": float(view.radial_k1),
            }
        )
        for key in _VIEW_ARRAYS + _VIEW_MAPS:
            value = getattr(view, key)
            if value is not None:
                arrays[f"{i}/{key}"] = value
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_reconstruction(path: Path) -> Reconstruction:
    with np.load(path) as data:
        header = json.loads(data["header"].tobytes())
        views = []
        for i, meta in enumerate(header["views"]):
            fields = {key: data[f"{i}/{key}"] for key in _VIEW_ARRAYS}
            maps = {key: data[f"{i}/{key}"] for key in _VIEW_MAPS if f"{i}/{key}" in data}
            views.append(View(**meta, **fields, **maps))
    return Reconstruction(
        engine=header["engine"],
        views=views,
        dropped=[DroppedPhoto(**d) for d in header["dropped"]],
        timings_s=header["timings_s"],
        # Files written before the verdict existed were never checked.
        quality=Quality.from_json(header["quality"])
        if "quality" in header
        else Quality.unchecked(),
        masks=header.get("masks", "none"),
        unit=header.get("unit"),
    )
