"""Pinhole cameras and rigid poses, in the conventions of ``aetherscan.reconstruction``.

Poses are ``cam_from_world`` 4x4 matrices in OpenCV camera axes (x right, y down, z forward);
the flip to the viewer's OpenGL axes happens in ``opencv_to_opengl`` and nowhere else.

Two pixel conventions meet here. AetherScan's (and COLMAP's): pixel (0, 0) covers [0, 1) x [0, 1),
so its centre is at (0.5, 0.5). OpenCV's (and Fast3R's focal and PnP code): the centre of pixel
(0, 0) is at (0, 0). ``opencv_K_to_colmap_K`` moves intrinsics from the second to the first,
``colmap_K_to_opencv_K`` back.
"""

from __future__ import annotations

import numpy as np

# A half turn about x: OpenCV camera axes (x right, y down, z forward) <-> OpenGL (x right, y up,
# z back). Its own inverse.
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics_matrix(focal_px: float | tuple[float, float], cx: float, cy: float) -> np.ndarray:
    """3x3 pinhole K from a focal length (one value, or (fx, fy)) and principal point."""
    fx, fy = (focal_px, focal_px) if np.isscalar(focal_px) else focal_px  # type: ignore[misc]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], np.float64)


def opencv_K_to_colmap_K(K: np.ndarray) -> np.ndarray:
    """Intrinsics for pixel centres at integers to intrinsics for pixel centres at +0.5."""
    out = np.array(K, np.float64)
    out[0, 2] += 0.5
    out[1, 2] += 0.5
    return out


def colmap_K_to_opencv_K(K: np.ndarray) -> np.ndarray:
    """Intrinsics for pixel centres at +0.5 to intrinsics for pixel centres at integers."""
    out = np.array(K, np.float64)
    out[0, 2] -= 0.5
    out[1, 2] -= 0.5
    return out


def crop_K_to_photo_K(
    K: np.ndarray, scale: tuple[float, float], crop_offset: tuple[float, float]
) -> np.ndarray:
    """Intrinsics of a resized-then-cropped image to intrinsics of the original photo.

    ``scale`` = (resized width / photo width, resized height / photo height); ``crop_offset`` =
    (left, top) of the crop in resized pixels. Both K use the pixel-centre (COLMAP) convention,
    in which resizing scales coordinates exactly: ``u_photo = (u_crop + left) / scale_x``.
    """
    sx, sy = scale
    left, top = crop_offset
    out = np.array(K, np.float64)
    out[0, :] = (out[0, :] + left * out[2, :]) / sx
    out[1, :] = (out[1, :] + top * out[2, :]) / sy
    return out


def photo_K_to_crop_K(
    K: np.ndarray, scale: tuple[float, float], crop_offset: tuple[float, float]
) -> np.ndarray:
    """The inverse of ``crop_K_to_photo_K``."""
    sx, sy = scale
    left, top = crop_offset
    out = np.array(K, np.float64)
    out[0, :] = out[0, :] * sx - left * out[2, :]
    out[1, :] = out[1, :] * sy - top * out[2, :]
    return out


def camera_center(cam_from_world: np.ndarray) -> np.ndarray:
    """The camera's centre in world coordinates."""
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    return -R.T @ t


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform: cam_from_world <-> world_from_cam."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"expected a 4x4 pose, got shape {pose.shape}")
    R, t = pose[:3, :3], pose[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 rigid transform from a 3x3 rotation and a translation."""
    out = np.eye(4)
    out[:3, :3] = R
    out[:3, 3] = np.asarray(t, np.float64).reshape(3)
    return out


def is_rigid(pose: np.ndarray, atol: float = 1e-6) -> bool:
    """True for a 4x4 [R | t; 0 0 0 1] with R a proper rotation (orthonormal, det +1)."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        return False
    R = pose[:3, :3]
    return (
        np.allclose(R @ R.T, np.eye(3), atol=atol)
        and abs(np.linalg.det(R) - 1.0) < atol
        and np.allclose(pose[3], [0, 0, 0, 1], atol=atol)
    )


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points (..., 3)."""
    points = np.asarray(points)
    return points @ transform[:3, :3].T.astype(points.dtype) + transform[:3, 3].astype(points.dtype)


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) to pixel coordinates (..., 2) (no check that z > 0)."""
    uvw = np.asarray(points_cam, np.float64) @ np.asarray(K, np.float64).T
    return uvw[..., :2] / uvw[..., 2:3]


def opencv_to_opengl(cam_from_world: np.ndarray) -> np.ndarray:
    """The same camera with OpenGL axes (x right, y up, z back) in place of OpenCV's.

    Returns ``gl_cam_from_world``; the viewer's camera matrix is its inverse. The flip is its own
    inverse, so the function also maps OpenGL back to OpenCV.
    """
    return OPENCV_TO_OPENGL @ np.asarray(cam_from_world, np.float64)


def world_from_opengl_cam(cam_from_world: np.ndarray) -> np.ndarray:
    """Camera-to-world pose with OpenGL camera axes, in the same world frame: the
    ``transform_matrix`` of nerfstudio / instant-ngp and the matrix of a glTF camera node."""
    return invert_pose(opencv_to_opengl(cam_from_world))
