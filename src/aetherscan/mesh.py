"""A triangle mesh with vertex colours from a reconstruction's points, for either engine.

1. **Normals** from the points' neighbourhoods (a plane through the 24 nearest), each turned to
   face the camera of the photo the point came from: every point knows its view, so the side a
   surface was seen from is known, not guessed.
2. **Screened Poisson surface reconstruction** (Kazhdan and Hoppe 2013; Open3D's), at an octree
   depth that grows with the number of points (``poisson_depth``; over ``MAX_POINTS`` points,
   a random ``MAX_POINTS`` of them), its colours interpolated from the points'.
   Poisson closes every surface it builds, so it makes surface where nothing was seen too.
3. **Trimmed where the surface has no support**: every vertex farther from the nearest point
   than a few point spacings goes (at most ``MAX_GAP`` of the scene's size), and with it its
   triangles, so that no triangle spans the background or closes what no photo saw.
4. **Small islands removed**: connected pieces with fewer than ``MIN_ISLAND`` of the largest
   piece's triangles.

The scene's size (``scene_size``) is the diagonal of the box holding the middle 98 % of the
points along each axis, so that a few stray points do not set it. Why Open3D: docs/benchmarks.md,
*Meshes*.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aetherscan.reconstruction import PointCloud, Reconstruction

log = logging.getLogger(__name__)

NORMAL_NEIGHBOURS = 24
MAX_POINTS = 600_000  # more are thinned at random first: depth 9 needs no more (measured)
MIN_POINTS = 50
GAP_SPACINGS = 10.0  # a vertex this many median point spacings from every point is trimmed
MAX_GAP = 0.01  # ... and one farther than this share of the scene's size, whatever the spacing
MIN_ISLAND = 0.02  # pieces with fewer triangles than this share of the largest piece's go


class MeshError(ValueError):
    """A mesh cannot be made of these points; the message says why."""


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32, the reconstruction's world frame
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    colors: np.ndarray  # (V, 3) uint8
    normals: np.ndarray  # (V, 3) float32, unit
    stats: dict[str, float] = field(default_factory=dict)  # what was done, and how long it took

    def area(self) -> float:
        return float(_triangle_areas(self.vertices, self.faces).sum())


def make_mesh(
    reconstruction: Reconstruction, *, min_confidence: float = 0.0, depth: int | None = None
) -> Mesh:
    """The mesh of the reconstruction's points with confidence >= ``min_confidence`` (see the
    module). ``depth``: the Poisson octree's (default: from the number of points). MeshError
    when there are too few points."""
    cloud = reconstruction.point_cloud(min_confidence)
    if len(cloud) < MIN_POINTS:
        raise MeshError(
            f"a mesh needs at least {MIN_POINTS} points; this reconstruction has {len(cloud)}"
        )
    centres = np.array([view.center for view in reconstruction.views], np.float64)
    return mesh_points(cloud, centres, depth=depth)


def mesh_points(cloud: PointCloud, camera_centres: np.ndarray, *, depth: int | None = None) -> Mesh:
    """``make_mesh`` for a cloud whose ``view_index`` indexes ``camera_centres`` (V, 3)."""
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    stats: dict[str, float] = {"points": len(cloud)}
    started = time.perf_counter()
    if len(cloud) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(cloud), MAX_POINTS, replace=False))
        cloud = PointCloud(
            cloud.xyz[keep], cloud.rgb[keep], cloud.confidence[keep], cloud.view_index[keep]
        )
    xyz = cloud.xyz.astype(np.float64)
    size = scene_size(xyz)
    points = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    points.colors = o3d.utility.Vector3dVector(cloud.rgb.astype(np.float64) / 255.0)
    points.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(NORMAL_NEIGHBOURS))
    normals = np.asarray(points.normals)
    towards_camera = camera_centres[cloud.view_index] - xyz
    flip = np.einsum("ij,ij->i", normals, towards_camera) < 0
    normals[flip] *= -1
    points.normals = o3d.utility.Vector3dVector(normals)
    stats["normals_s"] = time.perf_counter() - started

    depth = depth or poisson_depth(len(cloud))
    stats["depth"] = depth
    mark = time.perf_counter()
    surface, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        points, depth=depth, scale=1.1, linear_fit=False, n_threads=-1
    )
    stats["poisson_s"] = time.perf_counter() - mark
    stats["poisson_triangles"] = len(surface.triangles)

    mark = time.perf_counter()
    spacing = median_spacing(points)
    gap = min(GAP_SPACINGS * spacing, MAX_GAP * size)
    vertices = o3d.geometry.PointCloud(surface.vertices)
    distance = np.asarray(vertices.compute_point_cloud_distance(points))
    surface.remove_vertices_by_mask((distance > gap).tolist())
    surface.remove_unreferenced_vertices()
    found = surface.cluster_connected_triangles()
    island_of, island_sizes = np.asarray(found[0]), np.asarray(found[1])
    if len(island_sizes):
        small = island_sizes < MIN_ISLAND * island_sizes.max()
        surface.remove_triangles_by_mask(small[island_of].tolist())
        surface.remove_unreferenced_vertices()
    surface.compute_vertex_normals()
    stats["trim_s"] = time.perf_counter() - mark
    stats |= {"gap": gap, "scene_size": size, "spacing": spacing, "islands": len(island_sizes)}
    stats["seconds"] = time.perf_counter() - started
    if not len(surface.triangles):
        raise MeshError("no surface is left after trimming: the points are too sparse for a mesh")
    mesh = Mesh(
        np.asarray(surface.vertices, np.float32),
        np.asarray(surface.triangles, np.int32),
        np.clip(np.asarray(surface.vertex_colors) * 255 + 0.5, 0, 255).astype(np.uint8),
        np.asarray(surface.vertex_normals, np.float32),
        {
            key: round(value, 4) if isinstance(value, float) else value
            for key, value in stats.items()
        },
    )
    log.info("mesh: %s", mesh.stats)
    return mesh


def save_mesh(mesh: Mesh, path: Path) -> Path:
    """The mesh as one .npz (its arrays; the stats as JSON), written whole or not at all."""
    partial = path.with_name(path.name + ".part.npz")
    np.savez(
        partial,
        vertices=mesh.vertices,
        faces=mesh.faces,
        colors=mesh.colors,
        normals=mesh.normals,
        stats=np.array(json.dumps(mesh.stats)),
    )
    partial.replace(path)
    return path


def load_mesh(path: Path) -> Mesh:
    with np.load(path) as data:
        return Mesh(
            data["vertices"],
            data["faces"],
            data["colors"],
            data["normals"],
            json.loads(str(data["stats"])),
        )


def poisson_depth(points: int) -> int:
    """The octree depth for this many points: 7 below 60,000, 8 below 250,000, else 9 (a
    depth more quadruples the triangles and the time for no closer fit at these densities:
    docs/benchmarks.md, *Meshes*)."""
    return 7 if points < 60_000 else 8 if points < 250_000 else 9


def scene_size(xyz: np.ndarray) -> float:
    """The diagonal of the box of the middle 98 % of the points along each axis."""
    low, high = np.percentile(xyz, [1, 99], axis=0)
    return float(np.linalg.norm(high - low))


def median_spacing(points: object, sample: int = 20_000) -> float:
    """The median distance from a point to its nearest neighbour (of a sample of points)."""
    import open3d as o3d

    assert isinstance(points, o3d.geometry.PointCloud)
    count = len(points.points)
    if count > sample:
        index = np.random.default_rng(1).choice(count, sample, replace=False)
        probe = points.select_by_index(index.tolist())
    else:
        probe = points
    tree = o3d.geometry.KDTreeFlann(points)
    distances = []
    for point in np.asarray(probe.points):
        found, _, squared = tree.search_knn_vector_3d(point, 2)
        if found == 2:
            distances.append(math.sqrt(squared[1]))
    return float(np.median(distances)) if distances else 0.0


def _triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
