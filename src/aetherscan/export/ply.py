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
    return write_ply(reconstruction.point_cloud(min_confidence), path, ascii=ascii)


def write_ply(cloud: PointCloud, path: Path, *, ascii: bool = False) -> Path:
    vertices = np.empty(len(cloud), VERTEX_DTYPE)
    vertices["xyz"] = cloud.xyz
    vertices["rgb"] = cloud.rgb
    vertices["confidence"] = cloud.confidence
    header = _HEADER.format(
        format="ascii" if ascii else "binary_little_endian", count=len(cloud)
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


def _write_ascii_rows(f, vertices: np.ndarray) -> None:
    # float64 holds every float32 and uint8 exactly; 9 significant digits read float32 back
    # bit for bit.
    table = np.column_stack([vertices["xyz"], vertices["rgb"], vertices["confidence"]])
    np.savetxt(f, table.astype(np.float64), fmt="%.9g %.9g %.9g %d %d %d %.9g")
