"""Point clouds as PLY: x, y, z float, red, green, blue uchar, confidence float.

Binary little-endian by default (one structured numpy array written in one call, so millions of
points take milliseconds); ASCII on request for people and tools that want text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetherscan.reconstruction import PointCloud, Reconstruction

# Packed (no padding): 19 bytes a vertex, the exact layout the header below declares.
VERTEX_DTYPE = np.dtype([("xyz", "<f4", (3,)), ("rgb", "u1", (3,)), ("confidence", "<f4")])

_HEADER = """ply
format {format} 1.0
comment AetherScan point cloud: world frame of the reconstruction (docs/exports.md)
comment confidence: higher is better
element vertex {count}
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
property float confidence
end_header
"""


def export_ply(
    reconstruction: Reconstruction,
    path: Path,
    *,
    min_confidence: float = 0.0,
    ascii: bool = False,
) -> Path:
    """All points of the reconstruction with confidence >= min_confidence, as one PLY file."""
    # Filled view by view, straight from the views' arrays: one copy of the points, not the
    # three that gathering a PointCloud first would make.
    keeps = [view.confidence >= min_confidence for view in reconstruction.views]
    vertices = np.empty(sum(int(keep.sum()) for keep in keeps), VERTEX_DTYPE)
    start = 0
    for view, keep in zip(reconstruction.views, keeps, strict=True):
        every = bool(keep.all())
        block = vertices[start : start + int(keep.sum())]
        block["xyz"] = view.points if every else view.points[keep]
        block["rgb"] = view.colors if every else view.colors[keep]
        block["confidence"] = view.confidence if every else view.confidence[keep]
        start += len(block)
    return _write_vertices(vertices, path, ascii=ascii)


def write_ply(cloud: PointCloud, path: Path, *, ascii: bool = False) -> Path:
    vertices = np.empty(len(cloud), VERTEX_DTYPE)
    vertices["xyz"] = cloud.xyz
    vertices["rgb"] = cloud.rgb
    vertices["confidence"] = cloud.confidence
    return _write_vertices(vertices, path, ascii=ascii)


def _write_vertices(vertices: np.ndarray, path: Path, *, ascii: bool) -> Path:
    header = _HEADER.format(
        format="ascii" if ascii else "binary_little_endian", count=len(vertices)
    ).encode("ascii")
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        f.write(header)
        if ascii:
            _write_ascii_rows(f, vertices)
        else:
            vertices.tofile(f)
    partial.replace(path)
    return path


def _write_ascii_rows(f, vertices: np.ndarray, rows_per_chunk: int = 100_000) -> None:
    # 9 significant digits read float32 back bit for bit. Formatting Python floats row by row
    # in chunks is twice as fast as np.savetxt and keeps memory bounded.
    row = "%.9g %.9g %.9g %d %d %d %.9g\n"
    for start in range(0, len(vertices), rows_per_chunk):
        chunk = vertices[start : start + rows_per_chunk]
        columns = [*chunk["xyz"].T.tolist(), *chunk["rgb"].T.tolist(), chunk["confidence"].tolist()]
        f.write("".join([row % values for values in zip(*columns, strict=True)]).encode("ascii"))
