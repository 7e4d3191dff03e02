"""Test scenes for meshes: points on a unit sphere seen by cameras around it, and SphereEngine,
a TEST DOUBLE of an engine that returns such a scene for any photos (``--engine
mesh_kit:SphereEngine``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import Reconstruction, View


def camera_directions(count: int) -> np.ndarray:
    """``count`` directions spread evenly over the sphere (a Fibonacci lattice)."""
    k = np.arange(count) + 0.5
    z = 1 - 2 * k / count
    angle = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z**2)
    return np.column_stack([r * np.cos(angle), r * np.sin(angle), z])


def surrounding_views(points, colors, names: Sequence[str] | None = None, radius: float = 4.0):
    """A camera per name (14 by default) around the origin, each owning the points it sees most
    squarely: as in a real capture, no camera owns a point on the far side."""
    names = list(names or [f"view{k}.jpg" for k in range(14)])
    centres = radius * camera_directions(len(names))
    towards = centres[None, :, :] - points[:, None, :]
    towards /= np.linalg.norm(towards, axis=2, keepdims=True)
    outward = points / np.linalg.norm(points, axis=1, keepdims=True)
    owner = np.argmax(np.einsum("nj,ncj->nc", outward, towards), axis=1)
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    views = []
    for k, (name, centre) in enumerate(zip(names, centres, strict=True)):
        forward = -centre / np.linalg.norm(centre)
        up = [0, 0, 1.0] if abs(forward[2]) < 0.9 else [1.0, 0, 0]
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = R, -R @ centre
        mine = owner == k
        views.append(
            View(
                name, 640, 480, K, pose,
                points[mine].astype(np.float32), colors[mine],
                np.ones(int(mine.sum()), np.float32),
            )
        )  # fmt: skip
    return views


def sphere_points(n: int = 60_000, noise: float = 0.002, upper_only: bool = False, seed: int = 0):
    """Points on the unit sphere, red above the equator and blue below."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    if upper_only:
        points[:, 2] = np.abs(points[:, 2])
    points += rng.normal(scale=noise, size=points.shape)
    colors = np.where(points[:, 2:3] > 0, [220, 40, 30], [30, 60, 210]).astype(np.uint8)
    return points, colors


def sphere_scene(n: int = 60_000, noise: float = 0.002, upper_only: bool = False, seed: int = 0):
    points, colors = sphere_points(n, noise, upper_only, seed)
    return Reconstruction(engine="test", views=surrounding_views(points, colors)), points


class SphereEngine:
    """TEST DOUBLE: a sphere of ``points`` points, one camera per photo around it."""

    name = "sphere"

    def __init__(self, points: int = 20_000) -> None:
        self.points = points

    def reconstruct(
        self, photos: Sequence[Photo], observer: Observer | None = None
    ) -> Reconstruction:
        observer = observer or Observer()
        points, colors = sphere_points(self.points)
        views = surrounding_views(points, colors, [photo.name for photo in photos])
        observer.progress("mapping", 1.0, "a sphere")
        return Reconstruction(engine=self.name, views=views)
