import json

import numpy as np
import plyfile
from PIL import Image

from aetherscan.export import export, export_file


def test_transforms_match_the_poses_after_the_opengl_axis_change(scene, photos, tmp_path):
    path = export_file(scene, tmp_path / "ns" / "transforms.json", photos=photos)
    document = json.loads(path.read_text())
    assert document["camera_model"] == "OPENCV"
    assert "fl_x" not in document  # the views' intrinsics differ: per frame only
    frames = {frame["file_path"]: frame for frame in document["frames"]}
    assert set(frames) == {f"images/{view.name}" for view in scene.views}
    for view in scene.views:
        frame = frames[f"images/{view.name}"]
        c2w = np.array(frame["transform_matrix"])
        np.testing.assert_allclose(
            c2w, np.linalg.inv(view.cam_from_world) @ np.diag([1, -1, -1, 1]), atol=1e-12
        )
        np.testing.assert_allclose(c2w[:3, 3], view.center, atol=1e-12)
        K = [[frame["fl_x"], 0, frame["cx"]], [0, frame["fl_y"], frame["cy"]], [0, 0, 1]]
        np.testing.assert_array_equal(K, view.K)
        assert (frame["w"], frame["h"]) == (view.width, view.height)
        # A NeRF camera looks down -z with y up: the points land where the photo has them.
        xyz = view.points.astype(np.float64)
        local = (xyz - c2w[:3, 3]) @ c2w[:3, :3]
        assert (local[:, 2] < 0).all()
        u = frame["cx"] + frame["fl_x"] * local[:, 0] / -local[:, 2]
        v = frame["cy"] - frame["fl_y"] * local[:, 1] / -local[:, 2]
        cam = xyz @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
        expected = (cam @ view.K.T)[:, :2] / cam[:, 2:3]
        np.testing.assert_allclose(np.stack([u, v], 1), expected, atol=1e-6)
        with Image.open(path.parent / frame["file_path"]) as image:
            assert image.size == (frame["w"], frame["h"])
    ply = plyfile.PlyData.read(path.parent / document["ply_file_path"])
    assert ply["vertex"].count == scene.num_points


def test_shared_intrinsics_are_also_written_at_the_top_level(scene, tmp_path):
    for view in scene.views[1:]:
        view.K, view.width, view.height = (
            scene.views[0].K,
            scene.views[0].width,
            scene.views[0].height,
        )
    document = json.loads(
        export(scene, "nerfstudio", tmp_path / "ns").joinpath("transforms.json").read_text()
    )
    assert (document["fl_x"], document["w"], document["h"]) == (60.0, 64, 48)
    assert not (tmp_path / "ns" / "images").exists()  # no photos given: the cameras alone


def test_distortion_goes_with_each_frame_and_to_the_top_only_when_shared(scene, tmp_path):
    """nerfstudio takes k1, k2, p1, p2 from the top level for every frame as soon as one of
    them is there, so a top-level k1 = 0 beside distorted frames would undo them."""
    for view, k1 in zip(scene.views, [-0.12, 0.08, 0.0, -0.05], strict=True):
        view.radial_k1 = k1
    document = json.loads(
        export(scene, "nerfstudio", tmp_path / "a").joinpath("transforms.json").read_text()
    )
    assert document["camera_model"] == "OPENCV"
    assert not {"k1", "k2", "p1", "p2"} & document.keys()
    for frame, view in zip(document["frames"], scene.views, strict=True):
        assert (frame["k1"], frame["k2"], frame["p1"], frame["p2"]) == (view.radial_k1, 0, 0, 0)

    for view in scene.views:
        view.radial_k1 = -0.07
        view.K, view.width, view.height = scene.views[0].K, 64, 48
    shared = json.loads(
        export(scene, "nerfstudio", tmp_path / "b").joinpath("transforms.json").read_text()
    )
    assert (shared["k1"], shared["k2"], shared["p1"], shared["p2"]) == (-0.07, 0, 0, 0)
