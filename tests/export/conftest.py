"""A synthetic scene for the export tests: cameras around a unit sphere, seeing its surface.

Each view's points are where rays through a grid of its pixels hit the sphere, so they lie on
the surface, in front of their camera and inside their photo. Views differ in size (one is
portrait), focal lengths (one has fx != fy) and principal point; two carry depth maps, ray-cast
at half resolution. Photos are small JPEGs of the right size; one is stored sideways with an
EXIF orientation tag, as phones do.

Every GLB that a test here writes (as a file or inside a zip) goes through the Khronos glTF
validator after the test (``gltf_check.validate_gltf``); an error in it fails the test. Without Node.js
the validator cannot run, and ``test_export_glb`` says so with a skip.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gltf_check import NODE, validate_gltf
from PIL import Image

from aetherscan.reconstruction import DroppedPhoto, Reconstruction, View

RADIUS = 1.0
_ORIENTATION = 0x0112


@pytest.fixture(autouse=True)
def _validate_written_glb_files(request: pytest.FixtureRequest) -> Iterator[None]:
    if NODE is None or "tmp_path" not in request.fixturenames:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")  # now, so that it outlives this one
    yield
    files = sorted(tmp_path.rglob("*.glb"))
    for index, archive in enumerate(sorted(tmp_path.rglob("*.zip"))):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if name.endswith(".glb"):
                    unpacked = tmp_path / f".glb-from-zip-{index}"
                    files.append(Path(zipped.extract(name, unpacked)))
    if files:
        validate_gltf(files)


def look_at(center: np.ndarray) -> np.ndarray:
    """cam_from_world (OpenCV axes) of a camera at ``center`` looking at the origin, world y down."""
    z = -center
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    cam_from_world = np.eye(4)
    cam_from_world[:3, :3] = R
    cam_from_world[:3, 3] = -R @ center
    return cam_from_world


def ray_cast_sphere(K: np.ndarray, cam_from_world: np.ndarray, u: np.ndarray, v: np.ndarray):
    """World points where rays through pixels (u, v) first hit the sphere, their depths, hits."""
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    center = -R.T @ t
    rays = rays_cam @ R  # world directions, z component 1 in camera axes
    a = (rays**2).sum(-1)
    b = 2 * rays @ center
    c = center @ center - RADIUS**2
    disc = b**2 - 4 * a * c
    hit = disc > 0
    depth = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)  # camera z
    return center + depth[..., None] * rays, depth, hit


def _view(name, width, height, K, center, seed, with_depth) -> View:
    cam_from_world = look_at(np.asarray(center, float))
    u, v = np.meshgrid(np.arange(0.5, width, 3.0), np.arange(0.5, height, 3.0))
    xyz, _, hit = ray_cast_sphere(K, cam_from_world, u.ravel(), v.ravel())
    xyz = xyz[hit]
    rng = np.random.default_rng(seed)
    view = View(
        name=name,
        width=width,
        height=height,
        K=K,
        cam_from_world=cam_from_world,
        points=xyz.astype(np.float32),
        colors=np.clip((xyz / RADIUS + 1) * 127.5, 0, 255).astype(np.uint8),
        confidence=rng.uniform(1, 5, len(xyz)).astype(np.float32),
    )
    if with_depth:
        h, w = height // 2, width // 2
        depth_K = K.copy()
        depth_K[:2] *= 0.5
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        _, depth, hit = ray_cast_sphere(depth_K, cam_from_world, u, v)
        view.depth = np.where(hit, depth, 0.0).astype(np.float32)
        view.depth_confidence = rng.uniform(1, 5, (h, w)).astype(np.float32)
        view.depth_K = depth_K
    return view


def _K(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


@pytest.fixture
def scene() -> Reconstruction:
    views = [
        _view("front.jpg", 64, 48, _K(60, 60, 32, 24), [0.2, -0.3, -3.0], 0, True),
        _view("side.jpg", 64, 48, _K(70, 66, 30.5, 25), [3.2, -0.5, 0.1], 1, True),
        _view("back.png", 48, 64, _K(55, 55, 24, 32), [-0.4, 0.4, 3.5], 2, False),
        _view("sideways.jpg", 64, 48, _K(58, 58, 32, 24), [-3.0, -1.0, -1.0], 3, False),
    ]
    return Reconstruction("synthetic", views, [DroppedPhoto("blurry.jpg", "too few matches")])


@pytest.fixture
def photos(scene: Reconstruction, tmp_path: Path) -> dict[str, Path]:
    """Small photo files for the scene's views; sideways.jpg is stored rotated with EXIF 6."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    files = {}
    for view in scene.views:
        rng = np.random.default_rng(len(view.name))
        pixels = rng.integers(0, 256, (view.height, view.width, 3), dtype=np.uint8)
        path = folder / view.name
        image = Image.fromarray(pixels)
        if view.name == "sideways.jpg":
            # Stored pixels turned so that EXIF orientation 6 (rotate 90 clockwise) makes it upright.
            exif = Image.Exif()
            exif[_ORIENTATION] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
        else:
            image.save(path)
        files[view.name] = path
    return files
