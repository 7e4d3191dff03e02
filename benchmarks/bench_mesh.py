"""Meshes (issue 13, aetherscan.mesh): the time to mesh a million points on 2 cores, and how well
the mesh fits the points.

* ``--points N`` (default 1,000,000): a synthetic capture, an object on a table: a unit
  half-sphere on a 4 x 4 plane with a hole under it, 3 mm of noise, seen by 14 cameras around
  and above (each point owned by a camera that sees it); plus ``--reconstruction FILE``, a
  saved Reconstruction (``aetherscan.reconstruction.save_reconstruction``), e.g. a COLMAP run.
* Reported for each: the seconds of ``make_mesh`` (normals, Poisson, trim) best of
  ``--repeats``, the triangles, the median distance from the mesh's vertices to the nearest
  point as a share of the scene's size (goal < 0.5 %), and the share of the mesh's area farther
  than 2 % of the scene's size from every point (50,000 samples on the surface; goal < 2 %).
* ``--libraries``: the Poisson step alone on the synthetic points with Open3D and, where it is
  installed, PyMeshLab, at the same depth and with the same normals: seconds, triangles and the
  median distance from their vertices to the points, for the choice of library.

    PYTHONPATH=src python benchmarks/bench_mesh.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aetherscan.mesh import make_mesh, scene_size
from aetherscan.reconstruction import Reconstruction, View, load_reconstruction


def object_on_a_table(n: int, seed: int = 0) -> Reconstruction:
    rng = np.random.default_rng(seed)
    dome = rng.normal(size=(n // 2, 3))
    dome /= np.linalg.norm(dome, axis=1, keepdims=True)
    dome[:, 2] = np.abs(dome[:, 2])
    table = np.column_stack([rng.uniform(-2, 2, 2 * n), rng.uniform(-2, 2, 2 * n), np.zeros(2 * n)])
    table = table[np.linalg.norm(table[:, :2], axis=1) > 1.0][: n - len(dome)]
    normals = np.vstack([dome, np.tile([0.0, 0.0, 1.0], (len(table), 1))])
    points = np.vstack([dome, table]) + rng.normal(scale=0.003, size=normals.shape)
    colors = np.where(points[:, 2:3] > 0.02, [200, 90, 40], [120, 120, 110]).astype(np.uint8)
    # Two rings of cameras above the table, 20 and 50 degrees up, 4 units away; each point is
    # owned by the camera that sees its surface most squarely.
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    centres = np.vstack(
        [
            4 * np.column_stack([np.cos(elevation) * np.cos(angles + shift), np.cos(elevation) * np.sin(angles + shift), np.full(8, np.sin(elevation))])
            for elevation, shift in ((np.radians(20), 0.0), (np.radians(50), np.pi / 8))
        ]
    )  # fmt: skip
    towards = centres[None] - points[:, None]
    towards /= np.linalg.norm(towards, axis=2, keepdims=True)
    owner = np.argmax(np.einsum("nj,ncj->nc", normals, towards), axis=1)
    return Reconstruction(engine="synthetic", views=views_at(centres, points, colors, owner))


def views_at(centres: np.ndarray, points: np.ndarray, colors: np.ndarray, owner: np.ndarray):
    K = np.array([[800.0, 0, 512], [0, 800, 384], [0, 0, 1]])
    views = []
    for k, centre in enumerate(centres):
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = R, -R @ centre
        mine = owner == k
        confidence = np.ones(int(mine.sum()), np.float32)
        views.append(
            View(f"cam{k}.jpg", 1024, 768, K, pose, points[mine].astype(np.float32), colors[mine], confidence)
        )  # fmt: skip
    return views


def fit(mesh, xyz: np.ndarray) -> dict:
    import open3d as o3d
    import trimesh

    size = scene_size(xyz)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    vertices = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)))
    to_points = np.asarray(vertices.compute_point_cloud_distance(cloud))
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    samples, _ = trimesh.sample.sample_surface(surface, 50_000, seed=0)
    probe = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(samples.astype(np.float64)))
    far = np.asarray(probe.compute_point_cloud_distance(cloud)) > 0.02 * size
    return {
        "median_vertex_distance_pct": round(100 * float(np.median(to_points)) / size, 3),
        "far_area_pct": round(100 * float(far.mean()), 3),
    }


def measure(name: str, reconstruction: Reconstruction, repeats: int) -> dict:
    times, mesh = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        mesh = make_mesh(reconstruction)
        times.append(time.perf_counter() - start)
    assert mesh is not None
    xyz = reconstruction.point_cloud().xyz
    return {
        "input": name,
        "points": len(xyz),
        "seconds_best": round(min(times), 2),
        "seconds": [round(t, 2) for t in times],
        "triangles": len(mesh.faces),
        "stats": mesh.stats,
        **fit(mesh, xyz),
    }


def libraries(reconstruction: Reconstruction, depth: int) -> list[dict]:
    import open3d as o3d

    from aetherscan.mesh import Mesh

    cloud = reconstruction.point_cloud()
    xyz = cloud.xyz.astype(np.float64)
    centres = np.array([view.center for view in reconstruction.views])
    points = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    points.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(24))
    normals = np.asarray(points.normals)
    normals[np.einsum("ij,ij->i", normals, centres[cloud.view_index] - xyz) < 0] *= -1
    points.normals = o3d.utility.Vector3dVector(normals)
    rows = []
    start = time.perf_counter()
    surface, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        points, depth=depth, n_threads=-1
    )
    seconds = time.perf_counter() - start
    mesh = Mesh(np.asarray(surface.vertices, np.float32), np.asarray(surface.triangles), None, None)  # type: ignore[arg-type]
    rows.append(
        {
            "library": f"open3d {o3d.__version__}",
            "seconds": round(seconds, 2),
            "triangles": len(mesh.faces),
            **fit(mesh, xyz),
        }
    )
    try:
        import pymeshlab
    except ImportError:
        rows.append({"library": "pymeshlab", "skipped": "not installed"})
        return rows
    meshset = pymeshlab.MeshSet()
    meshset.add_mesh(pymeshlab.Mesh(vertex_matrix=xyz, v_normals_matrix=normals))
    start = time.perf_counter()
    meshset.generate_surface_reconstruction_screened_poisson(depth=depth, threads=2)
    seconds = time.perf_counter() - start
    made = meshset.current_mesh()
    mesh = Mesh(made.vertex_matrix().astype(np.float32), made.face_matrix(), None, None)  # type: ignore[arg-type]
    rows.append(
        {
            "library": "pymeshlab",
            "seconds": round(seconds, 2),
            "triangles": len(mesh.faces),
            **fit(mesh, xyz),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--reconstruction", type=Path, action="append", default=[])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--libraries", action="store_true")
    parser.add_argument("--depth", type=int, default=9, help="for --libraries")
    args = parser.parse_args()
    synthetic = object_on_a_table(args.points)
    if args.libraries:
        print(json.dumps(libraries(synthetic, args.depth), indent=1))
        return
    rows = [measure(f"object on a table ({args.points:,} points)", synthetic, args.repeats)]
    print(json.dumps(rows[-1]), flush=True)
    for path in args.reconstruction:
        rows.append(measure(path.name, load_reconstruction(path), args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
