"""Camera helpers: pose inverses, the OpenGL flip, K between crop and photo resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aetherscan.geometry.camera import (
    colmap_K_to_opencv_K,
    crop_K_to_photo_K,
    intrinsics_matrix,
    invert_pose,
    is_rigid,
    opencv_K_to_colmap_K,
    opencv_to_opengl,
    photo_K_to_crop_K,
    pose_matrix,
    project,
    transform_points,
)


def _random_pose(seed: int, rotation_sampler) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return pose_matrix(rotation_sampler(rng), rng.normal(scale=3.0, size=3))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_invert_pose_twice_is_identity_and_composes_to_eye(seed, rotation_sampler, tolerance):
    pose = _random_pose(seed, rotation_sampler)
    assert is_rigid(pose)
    np.testing.assert_allclose(invert_pose(invert_pose(pose)), pose, atol=tolerance["identity"])
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=tolerance["identity"])
    np.testing.assert_allclose(invert_pose(pose), np.linalg.inv(pose), atol=1e-10)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_opengl_flip_is_an_involution_and_keeps_the_camera_centre(
    seed, rotation_sampler, tolerance
):
    cam_from_world = _random_pose(seed, rotation_sampler)
    gl = opencv_to_opengl(cam_from_world)
    assert is_rigid(gl)
    np.testing.assert_allclose(opencv_to_opengl(gl), cam_from_world, atol=tolerance["identity"])
    centre = invert_pose(cam_from_world)[:3, 3]
    np.testing.assert_allclose(invert_pose(gl)[:3, 3], centre, atol=1e-9)


def test_opengl_flip_points_the_camera_down_minus_z_with_y_up():
    # A camera at the origin looking along world +z (OpenCV: z forward, y down).
    cam_from_world = np.eye(4)
    in_front_and_below = np.array([0.0, 1.0, 5.0])  # OpenCV: y down, so this is below centre
    gl_point = transform_points(opencv_to_opengl(cam_from_world), in_front_and_below)
    assert gl_point[2] < 0  # OpenGL cameras look down -z
    assert gl_point[1] < 0  # and y is up, so "below" is negative y
    assert gl_point[0] == 0


def test_opencv_K_to_colmap_K_moves_the_principal_point_half_a_pixel():
    K = intrinsics_matrix(100.0, 32.0, 24.0)
    np.testing.assert_array_equal(opencv_K_to_colmap_K(K)[:2, 2], [32.5, 24.5])
    np.testing.assert_array_equal(opencv_K_to_colmap_K(K)[[0, 1], [0, 1]], [100.0, 100.0])
    np.testing.assert_array_equal(colmap_K_to_opencv_K(opencv_K_to_colmap_K(K)), K)


@pytest.mark.parametrize(
    ("scale", "offset"), [((0.8, 0.8), (0, 0)), ((0.128, 0.127), (0, 8)), ((5.12, 5.12), (16, 0))]
)
def test_crop_K_to_photo_K_projects_like_the_resize_and_crop(scale, offset):
    """A 3D point seen by the photo camera lands at crop = photo * scale - offset."""
    K_photo = intrinsics_matrix((1500.0, 1490.0), 2010.0, 1515.0)
    K_crop = photo_K_to_crop_K(K_photo, scale, offset)
    np.testing.assert_allclose(crop_K_to_photo_K(K_crop, scale, offset), K_photo, atol=1e-9)
    points = np.random.default_rng(1).normal(size=(20, 3)) + np.array([0.0, 0.0, 6.0])
    in_photo = project(points, K_photo)
    in_crop = project(points, K_crop)
    expected = in_photo * np.array(scale) - np.array(offset)
    np.testing.assert_allclose(in_crop, expected, atol=1e-9)
