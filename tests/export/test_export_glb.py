import json
import math
import struct

import numpy as np
import pytest
import trimesh
from gltf_check import NODE, validate_gltf

from aetherscan.export import export
from aetherscan.geometry.camera import OPENCV_TO_OPENGL as FLIP_YZ
from aetherscan.geometry.camera import world_from_opengl_cam
from aetherscan.reconstruction import Reconstruction


def _project_opencv(view, xyz):
    cam = xyz @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
    return (cam @ view.K.T)[:, :2] / cam[:, 2:3]


def _read_glb(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length])
    bin_offset = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<I4s", data, bin_offset)
    assert bin_type == b"BIN\0" and bin_offset + 8 + bin_length == len(data)
    return document, bin_length


def test_glb_container_is_valid_gltf(scene, tmp_path):
    document, bin_length = _read_glb(export(scene, "glb", tmp_path / "scene.glb"))
    assert document["asset"]["version"] == "2.0"
    assert document["buffers"] == [{"byteLength": bin_length}]
    for view in document["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
        assert view["byteOffset"] + view["byteLength"] <= bin_length
    for mesh in document["meshes"]:
        for primitive in mesh["primitives"]:
            position = document["accessors"][primitive["attributes"]["POSITION"]]
            assert "min" in position and "max" in position
    modes = sorted(p["mode"] for m in document["meshes"] for p in m["primitives"])
    assert modes == [0] + [1] * len(scene.views)  # one POINTS primitive, one LINES per camera
    assert len(document["cameras"]) == len(scene.views)


def test_trimesh_loads_points_with_colours_in_gltf_axes(scene, tmp_path):
    loaded = trimesh.load(export(scene, "glb", tmp_path / "scene.glb", min_confidence=2.0))
    cloud = scene.point_cloud(2.0)
    points = loaded.geometry["points"]
    assert isinstance(points, trimesh.PointCloud)
    assert len(points.vertices) == len(cloud)
    np.testing.assert_allclose(points.vertices, cloud.xyz * [1, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(points.colors[:, :3], cloud.rgb)


def test_frustums_and_cameras_sit_where_the_photos_were_taken(scene, tmp_path):
    loaded = trimesh.load(export(scene, "glb", tmp_path / "scene.glb"))
    for view in scene.views:
        frustum = loaded.geometry[view.name]
        assert isinstance(frustum, trimesh.path.Path3D)
        world_from_node, _ = loaded.graph[view.name]
        vertices = trimesh.transform_points(frustum.vertices, world_from_node)
        # The apex is the camera centre; the far rectangle projects onto the photo's corners.
        np.testing.assert_allclose(vertices[0], view.center * [1, -1, -1], atol=1e-6)
        corners = _project_opencv(view, vertices[1:5] * [1, -1, -1])
        w, h = view.width, view.height
        np.testing.assert_allclose(corners, [[0, 0], [w, 0], [w, h], [0, h]], atol=1e-4)  # float32
        world_from_camera, _ = loaded.graph[f"{view.name} camera"]
        np.testing.assert_allclose(world_from_camera, world_from_node)


def test_gltf_camera_sees_each_view_as_the_photo_does(scene, tmp_path):
    """A glTF camera looks down -z with y up and sees yfov high, aspectRatio x yfov wide:
    projecting with the exported camera from its node pose lands the points where the OpenCV
    camera puts them (exactly where the principal point is centred and fx = fy, and along the
    vertical otherwise: glTF cameras have neither)."""
    path = export(scene, "glb", tmp_path / "scene.glb")
    document, _ = _read_glb(path)
    loaded = trimesh.load(path)
    nodes = {node["name"]: node for node in document["nodes"]}
    centred = 0
    for view in scene.views:
        node = nodes[f"{view.name} camera"]
        camera = document["cameras"][node["camera"]]
        assert camera["type"] == "perspective" and camera["name"] == f"{view.name} camera"
        yfov, aspect = camera["perspective"]["yfov"], camera["perspective"]["aspectRatio"]
        fx, fy, cx, cy = view.K[0, 0], view.K[1, 1], view.K[0, 2], view.K[1, 2]
        assert yfov == pytest.approx(2 * math.atan(view.height / (2 * fy)), rel=1e-12)
        assert aspect == pytest.approx(view.width / view.height, rel=1e-12)
        assert camera["perspective"]["znear"] > 0 and "zfar" not in camera["perspective"]

        world_from_camera = np.array(node["matrix"]).reshape(4, 4).T  # column-major
        np.testing.assert_allclose(world_from_camera, loaded.graph[f"{view.name} camera"][0])
        xyz = view.points.astype(np.float64)
        local = trimesh.transform_points(xyz * [1, -1, -1], np.linalg.inv(world_from_camera))
        assert (local[:, 2] < 0).all()
        # glTF's projection: normalised device coordinates in [-1, 1], y up, to pixels.
        ndc_x = local[:, 0] / -local[:, 2] / (aspect * math.tan(yfov / 2))
        ndc_y = local[:, 1] / -local[:, 2] / math.tan(yfov / 2)
        pixels = np.stack([(ndc_x + 1) / 2 * view.width, (1 - ndc_y) / 2 * view.height], 1)
        expected = _project_opencv(view, xyz)
        offset = np.array([cx - view.width / 2, cy - view.height / 2])
        # Vertically, yfov gives fy back: the rows agree up to the principal point's offset.
        np.testing.assert_allclose(pixels[:, 1] - view.height / 2, expected[:, 1] - cy, atol=1e-6)
        if fx == fy and not offset.any():
            centred += 1
            np.testing.assert_allclose(pixels, expected, atol=1e-6)
        # And with the full K, the node pose is the OpenCV camera's.
        u = cx + fx * local[:, 0] / -local[:, 2]
        v = cy - fy * local[:, 1] / -local[:, 2]
        np.testing.assert_allclose(np.stack([u, v], 1), expected, atol=1e-6)
    assert centred == 3  # front, back, sideways; side has fx != fy and an offset centre


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the glTF validator cannot run")
def test_the_khronos_validator_accepts_our_glb_and_catches_a_broken_one(scene, tmp_path):
    """conftest.py runs the validator on every GLB the export tests write; this shows that it
    runs here, and that it would catch a broken file."""
    reports = validate_gltf([export(scene, "glb", tmp_path / "scene.glb", min_confidence=2.0)])
    assert reports[0]["errors"] == 0 and reports[0]["warnings"] == 0
    data = bytearray((tmp_path / "scene.glb").read_bytes())
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + json_length])
    document["cameras"][0]["perspective"]["yfov"] = -1.0  # glTF requires yfov > 0
    text = json.dumps(document, separators=(",", ":")).encode().ljust(json_length, b" ")
    assert len(text) == json_length
    broken = tmp_path / "broken.bin"  # not .glb: the check after the test must not see it
    broken.write_bytes(data[:20] + text + data[20 + json_length :])
    with pytest.raises(AssertionError, match=r"yfov|NUMBER"):
        validate_gltf([broken])


def test_world_from_opengl_cam_flips_camera_axes_only():
    cam_from_world = np.eye(4)
    cam_from_world[:3, 3] = [1.0, 2.0, 3.0]
    gl = world_from_opengl_cam(cam_from_world)
    np.testing.assert_allclose(gl[:3, 3], [-1.0, -2.0, -3.0])  # the camera centre
    np.testing.assert_allclose(gl[:3, :3], np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(FLIP_YZ @ FLIP_YZ, np.eye(4))


def test_scene_without_points_or_views_is_still_valid(tmp_path):
    document, _ = _read_glb_or_empty(export(Reconstruction("x", []), "glb", tmp_path / "e.glb"))
    assert "buffers" not in document and "meshes" not in document


def _read_glb_or_empty(path):
    data = path.read_bytes()
    assert struct.unpack_from("<4sII", data, 0) == (b"glTF", 2, len(data))
    json_length, _ = struct.unpack_from("<I4s", data, 12)
    assert 20 + json_length == len(data)
    return json.loads(data[20:]), 0
