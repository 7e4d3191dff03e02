import json
import struct

import numpy as np
import trimesh

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
    """A glTF camera looks down -z with y up: projecting with that convention from the node pose
    lands the points where the OpenCV camera puts them."""
    loaded = trimesh.load(export(scene, "glb", tmp_path / "scene.glb"))
    for view in scene.views:
        world_from_camera, _ = loaded.graph[f"{view.name} camera"]
        xyz = view.points.astype(np.float64)
        local = trimesh.transform_points(xyz * [1, -1, -1], np.linalg.inv(world_from_camera))
        assert (local[:, 2] < 0).all()
        fx, fy, cx, cy = view.K[0, 0], view.K[1, 1], view.K[0, 2], view.K[1, 2]
        u = cx + fx * local[:, 0] / -local[:, 2]
        v = cy - fy * local[:, 1] / -local[:, 2]
        np.testing.assert_allclose(np.stack([u, v], 1), _project_opencv(view, xyz), atol=1e-6)


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
