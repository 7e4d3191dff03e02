"""Rectification: matches land on one row, and disparities give back the true depths."""

from __future__ import annotations

import numpy as np
import pytest

from aetherscan.geometry.camera import camera_center, colmap_K_to_opencv_K
from aetherscan.geometry.rectification import rectify_pair

ROW_TOLERANCE_PX = 1e-6
DEPTH_RELATIVE_TOLERANCE = 1e-9


def look_at(center: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """cam_from_world of a camera at ``center`` looking at ``target`` (OpenCV axes)."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    roll = np.radians(roll_deg)
    spin = np.array(
        [[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1.0]]
    )
    R = spin @ R
    pose = np.eye(4)
    pose[:3, :3] = R
    pose[:3, 3] = -R @ center
    return pose


def project(K: np.ndarray, pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    cam = points @ pose[:3, :3].T + pose[:3, 3]
    pixels = cam @ K.T
    return pixels[:, :2] / pixels[:, 2:]


def apply(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    mapped = np.column_stack([uv, np.ones(len(uv))]) @ H.T
    return mapped[:, :2] / mapped[:, 2:]


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])


@pytest.mark.parametrize(
    ("src_center", "roll_deg"),
    [
        ((0.6, 0.0, 0.0), 0.0),  # source to the right
        ((-0.6, 0.1, 0.2), 10.0),  # to the left, a little higher and further, rolled
        ((0.3, -0.5, -0.3), -90.0),  # above, closer, portrait-like roll
    ],
)
def test_matches_share_a_row_and_disparity_gives_depth(src_center, roll_deg) -> None:
    rng = np.random.default_rng(0)
    target = np.array([0.0, 0.0, 5.0])
    ref_pose = look_at(np.zeros(3), target)
    src_pose = look_at(np.array(src_center), target, roll_deg)
    K_ref = colmap_K_to_opencv_K(intrinsics(500.0, 640, 480))
    K_src = colmap_K_to_opencv_K(intrinsics(420.0, 480, 640))
    points = target + rng.uniform(-1, 1, (50, 3))

    rect = rectify_pair(K_ref, ref_pose, (640, 480), src_pose)
    assert rect is not None
    rect = rect.with_source_shift(7.0, 32).scaled(0.8)
    H_ref, H_src = rect.homographies(K_ref, K_src)
    here = apply(H_ref, project(K_ref, ref_pose, points))
    there = apply(H_src, project(K_src, src_pose, points))

    np.testing.assert_allclose(here[:, 1], there[:, 1], atol=ROW_TOLERANCE_PX)
    disparity = here[:, 0] - there[:, 0]
    assert np.all(disparity + rect.source_shift_px > 0), "the reference must be the left image"
    rect_depth = ((points @ ref_pose[:3, :3].T + ref_pose[:3, 3]) @ rect.ref_to_rect.T)[:, 2]
    np.testing.assert_allclose(
        rect.depth_from_disparity(disparity), rect_depth, rtol=DEPTH_RELATIVE_TOLERANCE
    )
    np.testing.assert_allclose(rect.disparity_from_depth(rect_depth), disparity, atol=1e-6)


def test_reference_image_fits_the_rectified_image() -> None:
    ref_pose = look_at(np.zeros(3), np.array([0.0, 0.0, 5.0]))
    src_pose = look_at(np.array([1.0, 0.0, 0.5]), np.array([0.0, 0.0, 5.0]))
    K = colmap_K_to_opencv_K(intrinsics(500.0, 640, 480))
    rect = rectify_pair(K, ref_pose, (640, 480), src_pose)
    assert rect is not None
    H_ref, _ = rect.homographies(K, K)
    corners = apply(H_ref, np.array([[-0.5, -0.5], [639.5, -0.5], [-0.5, 479.5], [639.5, 479.5]]))
    assert corners.min() >= -1e-6
    assert np.all(corners.max(axis=0) <= np.array(rect.size))
    assert rect.size[0] * rect.size[1] <= 640 * 480 + 2 * (640 + 480) + 1


def test_no_rectification_without_a_baseline() -> None:
    pose = look_at(np.zeros(3), np.array([0.0, 0.0, 5.0]))
    K = colmap_K_to_opencv_K(intrinsics(500.0, 640, 480))
    assert rectify_pair(K, pose, (640, 480), pose) is None


def test_colmap_K_to_opencv_K_moves_the_principal_point_half_a_pixel() -> None:
    K = intrinsics(500.0, 640, 480)
    np.testing.assert_allclose(colmap_K_to_opencv_K(K)[:2, 2], [319.5, 239.5])
    np.testing.assert_allclose(K[:2, 2], [320, 240])  # the input is left alone


def test_camera_center_inverts_the_pose() -> None:
    center = np.array([1.0, -2.0, 3.0])
    pose = look_at(center, np.zeros(3))
    np.testing.assert_allclose(camera_center(pose), center, atol=1e-12)
