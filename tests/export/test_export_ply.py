import numpy as np
import plyfile
import trimesh

from aetherscan.export import export
from aetherscan.export.ply import write_ply
from aetherscan.reconstruction import PointCloud


def test_binary_ply_reads_back_with_plyfile_and_trimesh(scene, tmp_path):
    path = export(scene, "ply", tmp_path / "scene.ply")
    cloud = scene.point_cloud()

    ply = plyfile.PlyData.read(path)
    assert not ply.text and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert vertex.count == len(cloud) == scene.num_points
    assert [p.name for p in vertex.properties] == [
        "x", "y", "z", "red", "green", "blue", "confidence"
    ]  # fmt: skip
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1)
    np.testing.assert_array_equal(xyz, cloud.xyz)
    np.testing.assert_array_equal(
        np.stack([vertex[c] for c in ("red", "green", "blue")], 1), cloud.rgb
    )
    np.testing.assert_array_equal(vertex["confidence"], cloud.confidence)
    assert vertex["red"].dtype == np.uint8 and vertex["x"].dtype == np.float32

    mesh = trimesh.load(path)
    assert isinstance(mesh, trimesh.PointCloud)
    assert len(mesh.vertices) == len(cloud)
    np.testing.assert_allclose(mesh.vertices, cloud.xyz, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mesh.colors[:, :3], cloud.rgb)


def test_ascii_ply_holds_the_same_values(scene, tmp_path):
    path = export(scene, "ply_ascii", tmp_path / "scene.ply")
    ply = plyfile.PlyData.read(path)
    assert ply.text
    cloud = scene.point_cloud()
    vertex = ply["vertex"]
    np.testing.assert_array_equal(vertex["x"], cloud.xyz[:, 0])
    np.testing.assert_array_equal(vertex["blue"], cloud.rgb[:, 2])
    np.testing.assert_array_equal(vertex["confidence"], cloud.confidence)


def test_min_confidence_keeps_only_confident_points(scene, tmp_path):
    path = export(scene, "ply", tmp_path / "scene.ply", min_confidence=3.0)
    vertex = plyfile.PlyData.read(path)["vertex"]
    assert vertex.count == len(scene.point_cloud(3.0)) < scene.num_points
    assert vertex["confidence"].min() >= 3.0


def test_empty_cloud_is_a_valid_ply(tmp_path):
    path = write_ply(PointCloud.empty(), tmp_path / "empty.ply")
    assert plyfile.PlyData.read(path)["vertex"].count == 0
    assert not list(tmp_path.glob("*.part"))
