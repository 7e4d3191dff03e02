"""Round trips on synthetic scenes: project known points with a known camera, solve, compare."""

from __future__ import annotations

import numpy as np
import pytest

from aetherscan.geometry.align import Similarity, align_local_to_global, umeyama
from aetherscan.geometry.camera import (
    intrinsics_matrix,
    invert_pose,
    is_rigid,
    pose_matrix,
    project,
    transform_points,
)
from aetherscan.geometry.focal import clamp_focal, estimate_focal
from aetherscan.geometry.pnp import solve_pnp


def _rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def _scene_pointmap(focal: float, height: int, width: int, seed: int) -> np.ndarray:
    """Camera-frame pointmap of a bumpy surface seen by a pinhole camera (OpenCV pixel grid)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    depth = 3.0 + 0.5 * np.sin(u / 7.0) * np.cos(v / 5.0) + rng.uniform(0, 0.2, (height, width))
    x = (u - width / 2) / focal * depth
    y = (v - height / 2) / focal * depth
    return np.stack([x, y, depth], axis=-1)


@pytest.mark.parametrize("focal", [30.0, 55.0, 140.0])
def test_estimate_focal_recovers_the_focal_of_an_exact_pointmap(focal, tolerance):
    pts3d = _scene_pointmap(focal, 48, 64, seed=3)
    conf = np.random.default_rng(0).uniform(1, 5, (48, 64))
    estimate = estimate_focal(pts3d, conf)
    assert estimate == pytest.approx(focal, rel=tolerance["roundtrip_focal_rel"])


def test_estimate_focal_is_robust_to_a_few_outliers():
    pts3d = _scene_pointmap(55.0, 48, 64, seed=4)
    pts3d[::37] *= np.array([3.0, -2.0, 1.0])  # about 3 % garbage
    assert estimate_focal(pts3d) == pytest.approx(55.0, rel=0.01)


def test_degenerate_pointmaps_still_give_a_usable_focal():
    assert np.isfinite(estimate_focal(np.zeros((8, 8, 3))))
    behind = _scene_pointmap(55.0, 16, 16, seed=0) * [1, 1, -1]  # negative focal fits best
    assert estimate_focal(behind) == clamp_focal(-1.0, 16, 16) > 0


@pytest.mark.parametrize("seed", range(5))
def test_solve_pnp_round_trip_on_exact_data(seed, rotation_sampler, tolerance):
    rng = np.random.default_rng(seed)
    cam_from_world = pose_matrix(rotation_sampler(rng, 60.0), rng.normal(size=3))
    K = intrinsics_matrix(500.0, 320.0, 240.0)
    points_cam = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(300, 3))
    points_world = transform_points(invert_pose(cam_from_world), points_cam)
    pixels = project(points_cam, K)
    result = solve_pnp(points_world, pixels, K)
    assert result is not None and result.num_inliers == 300
    assert is_rigid(result.cam_from_world)
    error = result.cam_from_world[:3, :3] @ cam_from_world[:3, :3].T
    assert _rotation_angle_deg(error) < np.degrees(tolerance["roundtrip_rotation"])
    np.testing.assert_allclose(
        result.cam_from_world[:3, 3], cam_from_world[:3, 3], atol=tolerance["roundtrip_translation"]
    )


def test_solve_pnp_tolerates_noise_and_outliers(rotation_sampler, tolerance):
    rng = np.random.default_rng(7)
    cam_from_world = pose_matrix(rotation_sampler(rng, 45.0), [0.3, -0.2, 0.5])
    K = intrinsics_matrix(400.0, 256.0, 192.0)
    points_cam = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(1000, 3))
    points_world = transform_points(invert_pose(cam_from_world), points_cam)
    pixels = project(points_cam, K) + rng.normal(scale=0.5, size=(1000, 2))
    pixels[:300] = rng.uniform(0, 512, size=(300, 2))  # 30 % outliers
    result = solve_pnp(points_world, pixels, K)
    assert result is not None and 650 < result.num_inliers < 800
    error = result.cam_from_world[:3, :3] @ cam_from_world[:3, :3].T
    assert _rotation_angle_deg(error) < tolerance["noisy_rotation_deg"]
    centre_error = np.linalg.norm(
        invert_pose(result.cam_from_world)[:3, 3] - invert_pose(cam_from_world)[:3, 3]
    )
    assert centre_error < tolerance["noisy_translation_rel"] * 6.0  # scene depth ~6


def test_solve_pnp_reports_failure_instead_of_a_pose():
    K = intrinsics_matrix(100.0, 32.0, 24.0)
    assert solve_pnp(np.zeros((3, 3)), np.zeros((3, 2)), K) is None
    assert solve_pnp(np.full((50, 3), np.nan), np.zeros((50, 2)), K) is None
    with pytest.raises(ValueError, match="pixels"):
        solve_pnp(np.zeros((5, 3)), np.zeros((4, 2)), K)


@pytest.mark.parametrize("seed", range(5))
def test_umeyama_recovers_a_known_similarity(seed, rotation_sampler, tolerance):
    rng = np.random.default_rng(seed)
    truth = Similarity(float(rng.uniform(0.1, 10)), rotation_sampler(rng), rng.normal(size=3))
    source = rng.normal(size=(100, 3))
    fitted = umeyama(source, truth.apply(source))
    np.testing.assert_allclose(
        fitted.matrix(), truth.matrix(), atol=tolerance["roundtrip_similarity"]
    )
    assert np.linalg.det(fitted.rotation) == pytest.approx(1.0)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(50, 3))
    mirrored = source * [1, 1, -1]
    fitted = umeyama(source, mirrored)
    assert np.linalg.det(fitted.rotation) == pytest.approx(1.0)


def test_align_local_to_global_uses_the_confident_pixels(rotation_sampler, tolerance):
    rng = np.random.default_rng(5)
    truth = Similarity(2.5, rotation_sampler(rng), np.array([1.0, -2.0, 0.5]))
    local = rng.normal(size=(20, 30, 3)).astype(np.float32)
    global_ = truth.apply(local.astype(np.float64))
    conf = rng.uniform(1, 2, (20, 30))
    conf[:5] = 10.0  # top rows are the confident 15 %+ and exact ...
    global_[5:] += rng.normal(scale=5.0, size=global_[5:].shape)  # ... the rest is garbage
    aligned, fitted = align_local_to_global(local, global_, conf)
    np.testing.assert_allclose(fitted.matrix(), truth.matrix(), atol=1e-6)
    np.testing.assert_allclose(aligned[:5], global_[:5], atol=1e-5)


def test_align_local_to_global_falls_back_to_identity_without_points():
    local = np.full((4, 4, 3), np.nan, np.float32)
    aligned, fitted = align_local_to_global(local, np.zeros((4, 4, 3)), np.ones((4, 4)))
    assert fitted.scale == 1.0 and np.array_equal(fitted.rotation, np.eye(3))
    assert aligned.shape == (4, 4, 3)
