"""Reconstruction.scaled: the same scene in another unit. A round trip: every camera sees every
point at the same pixel and depth maps stay consistent with the points, before and after."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aetherscan.geometry.camera import project, transform_points
from aetherscan.reconstruction import Reconstruction, View, load_reconstruction, save_reconstruction


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(np.eye(3) + rng.normal(scale=0.2, size=(3, 3)))
    q = q * np.sign(np.diag(r))  # near the identity
    return q if np.linalg.det(q) > 0 else -q


def _scene(seed: int = 0) -> Reconstruction:
    rng = np.random.default_rng(seed)
    views = []
    for index in range(3):
        pose = np.eye(4)
        pose[:3, :3] = _rotation(rng)
        pose[:3, 3] = rng.normal(size=3) + np.array([0, 0, 5])
        points = rng.normal(size=(200, 3)).astype(np.float32)
        depth = rng.uniform(0, 9, (12, 16)).astype(np.float32)
        depth[0, 0] = 0.0  # unknown
        views.append(
            View(
                name=f"{index}.jpg",
                width=640,
                height=480,
                K=np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]]),
                cam_from_world=pose,
                points=points,
                colors=rng.integers(0, 256, (200, 3), dtype=np.uint8),
                confidence=rng.uniform(1, 5, 200).astype(np.float32),
                depth=depth,
                depth_K=np.array([[12.5, 0, 8], [0, 12.5, 6], [0, 0, 1]]),
                radial_k1=-0.01,
            )
        )
    return Reconstruction("test", views)


def test_scaled_cameras_see_scaled_points_at_the_same_pixels():
    scene = _scene()
    metric = scene.scaled(0.0123, unit="metre")
    assert metric.unit == "metre" and scene.unit is None
    for before, after in zip(scene.views, metric.views, strict=True):
        cloud = scene.point_cloud().xyz.astype(np.float64)
        scaled_cloud = metric.point_cloud().xyz.astype(np.float64)
        pixels = project(transform_points(before.cam_from_world, cloud), before.K)
        scaled_pixels = project(transform_points(after.cam_from_world, scaled_cloud), after.K)
        np.testing.assert_allclose(scaled_pixels, pixels, atol=1e-3)
        np.testing.assert_array_equal(after.K, before.K)
        np.testing.assert_array_equal(after.cam_from_world[:3, :3], before.cam_from_world[:3, :3])
        np.testing.assert_allclose(after.center, before.center * 0.0123, rtol=1e-12)
        np.testing.assert_allclose(after.depth, before.depth * np.float32(0.0123), rtol=1e-6)
        assert after.depth[0, 0] == 0.0  # unknown stays unknown
        assert after.points.dtype == np.float32 and after.depth.dtype == np.float32
        np.testing.assert_array_equal(after.colors, before.colors)
        np.testing.assert_array_equal(after.confidence, before.confidence)
        assert after.radial_k1 == before.radial_k1


def test_scaling_leaves_the_original_alone_and_undoes():
    scene = _scene()
    poses = [view.cam_from_world.copy() for view in scene.views]
    back = scene.scaled(4.0).scaled(0.25)
    for view, pose, again in zip(scene.views, poses, back.views, strict=True):
        np.testing.assert_array_equal(view.cam_from_world, pose)
        np.testing.assert_allclose(again.cam_from_world, pose, atol=1e-12)
        np.testing.assert_allclose(again.points, view.points, rtol=1e-6)


@pytest.mark.parametrize("factor", [0.0, -1.0, math.inf, math.nan])
def test_a_factor_that_is_no_scale_is_refused(factor):
    with pytest.raises(ValueError, match="positive finite"):
        _scene().scaled(factor)


def test_the_unit_is_saved_and_loaded(tmp_path):
    save_reconstruction(_scene().scaled(2.0, unit="metre"), tmp_path / "r.npz")
    assert load_reconstruction(tmp_path / "r.npz").unit == "metre"
    save_reconstruction(_scene(), tmp_path / "plain.npz")
    assert load_reconstruction(tmp_path / "plain.npz").unit is None
