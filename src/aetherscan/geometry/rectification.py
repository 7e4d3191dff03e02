"""Stereo rectification of two calibrated cameras: homographies that make epipolar lines rows.

Pixel coordinates here follow OpenCV (the centre of pixel (0, 0) is at (0, 0)), the convention of
``cv2.warpPerspective`` and ``cv2.remap``; ``geometry.camera.colmap_K_to_opencv_K`` converts the project's
pixel-centre K (image centre at (W/2, H/2)) into it.

Both rectified cameras share one rotation (``rect_from_world``): x along the baseline from the
reference to the source camera, z close to their mean viewing direction. So the reference is always
the left image of the pair and disparities are positive, whichever side the source camera is on
(a source on the left turns both rectified images upside down, which stereo matching does not mind).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aetherscan.geometry.camera import camera_center


@dataclass(frozen=True)
class Rectification:
    """How to warp a reference/source pair so that matches lie on the same row.

    Rectified pixel ``(x, y)`` of either image sees the ray ``K_rect^-1 (x + shift, y, 1)`` of the
    rectified camera, where ``shift`` is 0 for the reference and ``source_shift_px`` for the source.
    A point at rectified depth Z has ``disparity = x_ref - x_src = focal_px * baseline / Z -
    source_shift_px``; the shift moves the expected disparities down to start near 0.
    """

    ref_to_rect: np.ndarray  # (3, 3) rotation: reference camera axes -> rectified axes
    src_to_rect: np.ndarray  # (3, 3) rotation: source camera axes -> rectified axes
    K_rect: np.ndarray  # (3, 3) intrinsics of the rectified reference image (OpenCV convention)
    size: tuple[int, int]  # (width, height) of both rectified images
    baseline: float  # distance between the camera centres, world units
    source_shift_px: float = 0.0

    @property
    def focal_px(self) -> float:
        return float(self.K_rect[0, 0])

    def homographies(self, K_ref: np.ndarray, K_src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H_ref, H_src): original pixels (OpenCV K given) -> rectified pixels."""
        K_rect_src = self.K_rect.copy()
        K_rect_src[0, 2] += self.source_shift_px
        H_ref = self.K_rect @ self.ref_to_rect @ np.linalg.inv(K_ref)
        H_src = K_rect_src @ self.src_to_rect @ np.linalg.inv(K_src)
        return H_ref / H_ref[2, 2], H_src / H_src[2, 2]

    def depth_from_disparity(self, disparity: np.ndarray) -> np.ndarray:
        """Depth along the rectified z axis for measured disparities (> -source_shift_px)."""
        return self.focal_px * self.baseline / (disparity + self.source_shift_px)

    def disparity_from_depth(self, depth: np.ndarray) -> np.ndarray:
        return self.focal_px * self.baseline / depth - self.source_shift_px

    def scaled(self, factor: float) -> Rectification:
        """The same rectification at ``factor`` times the resolution."""
        K_rect = self.K_rect.copy()
        K_rect[:2] *= factor
        size = (
            max(1, int(np.ceil(self.size[0] * factor))),
            max(1, int(np.ceil(self.size[1] * factor))),
        )
        return Rectification(
            self.ref_to_rect,
            self.src_to_rect,
            K_rect,
            size,
            self.baseline,
            self.source_shift_px * factor,
        )

    def cropped(self, left: int, top: int, right: int, bottom: int) -> Rectification:
        """The window [left, right) x [top, bottom) of both rectified images."""
        K_rect = self.K_rect.copy()
        K_rect[0, 2] -= left
        K_rect[1, 2] -= top
        return Rectification(
            self.ref_to_rect,
            self.src_to_rect,
            K_rect,
            (right - left, bottom - top),
            self.baseline,
            self.source_shift_px,
        )

    def with_source_shift(self, shift_px: float, pad_left_px: int) -> Rectification:
        """Shift the source image by ``shift_px`` and widen both images by ``pad_left_px`` on the
        left, where the source pixels that match the reference's left edge land."""
        K_rect = self.K_rect.copy()
        K_rect[0, 2] += pad_left_px
        return Rectification(
            self.ref_to_rect,
            self.src_to_rect,
            K_rect,
            (self.size[0] + pad_left_px, self.size[1]),
            self.baseline,
            self.source_shift_px + shift_px,
        )


def rectify_pair(
    K_ref: np.ndarray,
    ref_from_world: np.ndarray,
    ref_size: tuple[int, int],
    src_from_world: np.ndarray,
    *,
    max_area_ratio: float = 1.0,
) -> Rectification | None:
    """Rectify the reference camera (OpenCV ``K_ref``, image ``ref_size`` = (width, height))
    against a source camera; None when no useful rectification exists (coincident centres, or a
    reference image that would wrap behind the rectified camera).

    The rectified reference image covers the whole reference image at about its own focal length,
    scaled down when the warp would make it more than ``max_area_ratio`` times larger.
    """
    R_ref, R_src = ref_from_world[:3, :3], src_from_world[:3, :3]
    offset = camera_center(src_from_world) - camera_center(ref_from_world)
    baseline = float(np.linalg.norm(offset))
    if baseline <= 1e-12:
        return None
    x_axis = offset / baseline
    mean_view = R_ref[2] + R_src[2]  # optical axes in world coordinates, summed
    z_axis = mean_view - (mean_view @ x_axis) * x_axis
    if np.linalg.norm(z_axis) < 1e-6:  # both cameras look along the baseline
        return None
    z_axis /= np.linalg.norm(z_axis)
    rect_from_world = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis])
    ref_to_rect = rect_from_world @ R_ref.T
    src_to_rect = rect_from_world @ R_src.T

    width, height = ref_size
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float)
    corners[:, :2] -= 0.5  # pixel edges, OpenCV convention
    rays = (ref_to_rect @ np.linalg.inv(K_ref) @ corners.T).T  # (4, 3)
    if np.any(rays[:, 2] <= 1e-3 * np.linalg.norm(rays, axis=1)):
        return None
    focal = float(np.sqrt(K_ref[0, 0] * K_ref[1, 1]))
    planar = rays[:, :2] / rays[:, 2:]  # on the rectified image plane at focal length 1
    low, high = planar.min(axis=0), planar.max(axis=0)
    area = float(np.prod(high - low)) * focal**2
    scale = min(1.0, np.sqrt(max_area_ratio * width * height / area))
    focal *= scale
    size = np.ceil((high - low) * focal).astype(int) + 1
    K_rect = np.array(
        [[focal, 0.0, -low[0] * focal], [0.0, focal, -low[1] * focal], [0.0, 0.0, 1.0]]
    )
    return Rectification(
        ref_to_rect, src_to_rect, K_rect, (int(size[0]), int(size[1])), baseline, 0.0
    )
