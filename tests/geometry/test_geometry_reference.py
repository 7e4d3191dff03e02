"""Focal, PnP and local-to-global alignment against upstream on exact pointmaps (SPEC §4)."""

from __future__ import annotations

import numpy as np
import pytest

from aetherscan.geometry.align import align_local_to_global
from aetherscan.geometry.camera import intrinsics_matrix, invert_pose
from aetherscan.geometry.focal import estimate_focal
from aetherscan.geometry.pnp import solve_pnp


@pytest.fixture(scope="module")
def geometry_reference(fast3r_reference):
    with np.load(fast3r_reference / "geometry_reference.npz") as data:
        return dict(data)


def test_focal_matches_upstream_weiszfeld(geometry_reference, tolerance):
    focal = estimate_focal(
        geometry_reference["view0_pts3d_in_other_view"][0], geometry_reference["view0_conf"][0]
    )
    assert (
        abs(focal - float(geometry_reference["est_focal_view0_weiszfeld"]))
        < tolerance["reference_focal_px"]
    )
    assert abs(focal - 55.0) < tolerance["reference_focal_px"]


@pytest.mark.parametrize("view", [0, 1, 2])
def test_pnp_pose_matches_upstream_c2w(geometry_reference, tolerance, view):
    pts3d = geometry_reference[f"view{view}_pts3d_in_other_view"][0]
    height, width = pts3d.shape[:2]
    v, u = np.mgrid[0:height, 0:width]
    pixels = np.stack([u, v], axis=-1).astype(np.float64)
    K = intrinsics_matrix(float(geometry_reference["gt_focal"]), width / 2, height / 2)
    result = solve_pnp(pts3d.reshape(-1, 3), pixels.reshape(-1, 2), K)
    assert result is not None
    assert result.num_inliers == height * width
    world_from_cam = invert_pose(result.cam_from_world)
    np.testing.assert_allclose(
        world_from_cam, geometry_reference[f"view{view}_est_c2w"], atol=tolerance["reference_c2w"]
    )
    np.testing.assert_allclose(
        world_from_cam, geometry_reference[f"view{view}_gt_c2w"], atol=tolerance["reference_c2w"]
    )


@pytest.mark.parametrize("view", [0, 1, 2])
def test_local_maps_align_to_global_like_upstream(geometry_reference, tolerance, view):
    aligned, similarity = align_local_to_global(
        geometry_reference[f"view{view}_pts3d_local"][0],
        geometry_reference[f"view{view}_pts3d_in_other_view"][0],
        geometry_reference[f"view{view}_conf"][0],
    )
    assert aligned.dtype == np.float32
    np.testing.assert_allclose(
        aligned,
        geometry_reference[f"view{view}_pts3d_local_aligned_to_global"][0],
        atol=tolerance["reference_aligned_map"],
    )
    assert similarity.scale == pytest.approx(2.0, rel=1e-6)  # the local maps are at half scale
