"""Meshes (aetherscan.mesh, aetherscan.export.mesh_files): made from points on known surfaces,
read back with trimesh, and measured against those points and surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from mesh_kit import sphere_scene

from aetherscan.export import FORMATS, available_formats, export_mesh_file
from aetherscan.mesh import Mesh, MeshError, load_mesh, make_mesh, save_mesh, scene_size


def far_area_share(mesh: Mesh, points: np.ndarray, limit: float) -> float:
    """The share of the mesh's area farther than ``limit`` from every point (sampled)."""
    import open3d as o3d

    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    samples, _ = trimesh.sample.sample_surface(surface, 50_000, seed=0)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    probe = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(samples.astype(np.float64)))
    return float(np.mean(np.asarray(probe.compute_point_cloud_distance(cloud)) > limit))


def test_a_sphere_s_mesh_lies_on_it_faces_out_and_keeps_its_colours():
    scene, points = sphere_scene()
    mesh = make_mesh(scene)
    size = scene_size(points)
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert np.median(np.abs(radius - 1.0)) < 0.005 * size
    assert far_area_share(mesh, points, 0.02 * size) < 0.02
    assert abs(mesh.area() - 4 * np.pi) < 0.05 * 4 * np.pi  # whole: nothing trimmed off
    # Normals from the cameras: outwards, everywhere.
    outward = np.einsum("ij,ij->i", mesh.normals, mesh.vertices / radius[:, None])
    assert np.mean(outward > 0) > 0.99
    top = mesh.vertices[:, 2] > 0.3
    assert np.all(mesh.colors[top, 0] > 150) and np.all(
        mesh.colors[~top & (mesh.vertices[:, 2] < -0.3), 2] > 150
    )


def test_what_no_point_supports_is_trimmed_away():
    """Poisson closes the open half-sphere; the trim takes the closing off again."""
    scene, points = sphere_scene(upper_only=True)
    mesh = make_mesh(scene)
    size = scene_size(points)
    assert mesh.vertices[:, 2].min() > -0.02 * size
    assert far_area_share(mesh, points, 0.02 * size) < 0.02
    assert 0.9 * 2 * np.pi < mesh.area() < 1.1 * 2 * np.pi


def test_stray_points_leave_no_islands():
    scene, _ = sphere_scene()
    rng = np.random.default_rng(5)
    strays = rng.uniform(-3, 3, (40, 3)).astype(np.float32)
    strays = strays[np.linalg.norm(strays, axis=1) > 1.5]
    view = scene.views[0]
    view.points = np.vstack([view.points, strays])
    view.colors = np.vstack([view.colors, np.full((len(strays), 3), 255, np.uint8)])
    view.confidence = np.ones(len(view.points), np.float32)
    mesh = make_mesh(scene)
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 1.1


def test_too_few_points_are_refused_with_a_sentence():
    scene, _ = sphere_scene(n=30)
    with pytest.raises(MeshError, match="at least 50 points"):
        make_mesh(scene)
    assert not set(available_formats(scene)) & {"mesh_ply", "mesh_glb", "mesh_obj"}


@pytest.fixture(scope="module")
def sphere_mesh_files(tmp_path_factory):
    scene, _ = sphere_scene(n=20_000)
    folder = tmp_path_factory.mktemp("meshes")
    mesh = scene.mesh()
    assert scene.mesh() is mesh  # made once
    paths = {
        suffix: export_mesh_file(scene, folder / f"mesh{suffix}")
        for suffix in (".ply", ".obj", ".glb")
    }
    return mesh, paths


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_every_mesh_file_reads_back_with_its_vertices_faces_and_colours(sphere_mesh_files, suffix):
    mesh, paths = sphere_mesh_files
    if suffix == ".glb":  # one mesh in a scene, in glTF's axes: x, y, z -> x, -y, -z
        (read,) = trimesh.load(paths[suffix], process=False).geometry.values()
        vertices = np.asarray(read.vertices) * [1, -1, -1]
        colors = np.asarray(read.visual.vertex_attributes["color"])[:, :3]
    else:
        read = trimesh.load(paths[suffix], force="mesh", process=False)
        vertices = np.asarray(read.vertices)
        colors = np.asarray(read.visual.vertex_colors)[:, :3]
    assert len(read.faces) == len(mesh.faces) and len(vertices) == len(mesh.vertices)
    assert np.allclose(vertices, mesh.vertices, atol=1e-5 if suffix != ".obj" else 1e-4)
    assert np.abs(colors.astype(int) - mesh.colors).max() <= 1
    assert np.array_equal(np.asarray(read.faces), mesh.faces)
    # The same winding: the faces' normals agree with the vertex normals.
    face_normals = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).face_normals
    assert np.mean(np.einsum("ij,ij->i", face_normals, mesh.normals[mesh.faces[:, 0]]) > 0) > 0.99


def test_a_saved_mesh_loads_the_same(tmp_path, sphere_mesh_files):
    mesh, _ = sphere_mesh_files
    again = load_mesh(save_mesh(mesh, tmp_path / "mesh.npz"))
    for name in ("vertices", "faces", "colors", "normals"):
        assert np.array_equal(getattr(again, name), getattr(mesh, name))
    assert again.stats == mesh.stats


def test_the_mesh_formats_are_listed_with_their_files():
    assert {FORMATS[key].filename for key in ("mesh_ply", "mesh_glb", "mesh_obj")} == {
        "mesh.ply",
        "mesh.glb",
        "mesh.obj",
    }
    with pytest.raises(ValueError, match=r"\.ply, \.glb or \.obj"):
        export_mesh_file(sphere_scene(n=100)[0], "mesh.stl")
