"""A Mesh (``aetherscan.mesh``) as PLY, OBJ or GLB, with its vertex colours.

- **PLY**, binary little-endian: vertices ``x y z`` (float), ``nx ny nz`` (float), ``red green
  blue`` (uchar), faces ``vertex_indices`` (a uchar count, then int indices). MeshLab, Blender
  and CloudCompare read the colours.
- **OBJ**, text: ``v x y z r g b`` (colours 0 to 1 after the position, the extension MeshLab,
  Blender and trimesh read), ``vn`` normals, and ``f a//a b//b c//c`` (1-based).
- **GLB**: one TRIANGLES primitive with POSITION, NORMAL and COLOR_0, a plain lit material,
  in glTF's axes (y up: the same turn as the points' GLB, ``aetherscan.export.glb``).

Every file is in the reconstruction's world frame and unit (metres for a scaled job), and is
written whole or not at all (a .part file moved in place).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetherscan.export.glb import _FLIP_YZ_32, _Gltf
from aetherscan.mesh import Mesh

MESH_FORMATS = {"mesh_ply": ".ply", "mesh_obj": ".obj", "mesh_glb": ".glb"}
_TRIANGLES = 4


def write_mesh(mesh: Mesh, fmt: str, path: Path) -> Path:
    writer = {"mesh_ply": write_mesh_ply, "mesh_obj": write_mesh_obj, "mesh_glb": write_mesh_glb}
    return writer[fmt](mesh, Path(path))


def write_mesh_ply(mesh: Mesh, path: Path) -> Path:
    vertex = np.empty(
        len(mesh.vertices),
        dtype=[
            *((axis, "<f4") for axis in ("x", "y", "z", "nx", "ny", "nz")),
            *((channel, "u1") for channel in ("red", "green", "blue")),
        ],
    )
    for k, axis in enumerate("xyz"):
        vertex[axis] = mesh.vertices[:, k]
        vertex[f"n{axis}"] = mesh.normals[:, k]
    for k, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = mesh.colors[:, k]
    face = np.empty(len(mesh.faces), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
    face["count"] = 3
    face["indices"] = mesh.faces
    header = "\n".join(
        [
            "ply",
            "format binary_little_endian 1.0",
            "comment AetherScan mesh: screened Poisson, trimmed where no point supports it",
            f"element vertex {len(vertex)}",
            *(f"property float {name}" for name in ("x", "y", "z", "nx", "ny", "nz")),
            *(f"property uchar {name}" for name in ("red", "green", "blue")),
            f"element face {len(face)}",
            "property list uchar int vertex_indices",
            "end_header",
            "",
        ]
    )
    return _write_whole(path, [header.encode("ascii"), vertex.tobytes(), face.tobytes()])


def write_mesh_obj(mesh: Mesh, path: Path) -> Path:
    rows = np.hstack([mesh.vertices, mesh.colors / 255.0])
    parts = [
        b"# AetherScan mesh: screened Poisson, trimmed where no point supports it\n",
        b"# v x y z r g b (vertex colours 0..1); vn normals; f 1-based\n",
        _rows(b"v", rows, "%.6g"),
        _rows(b"vn", mesh.normals, "%.4f"),
    ]
    faces = mesh.faces.astype(np.int64) + 1
    corner = np.repeat(faces, 2, axis=1)  # a//a b//b c//c
    parts.append(_rows(b"f", corner, "%d//%d %d//%d %d//%d", joined=True))
    return _write_whole(path, parts)


def write_mesh_glb(mesh: Mesh, path: Path) -> Path:
    gltf = _Gltf()
    if len(mesh.faces):
        rgba = np.concatenate([mesh.colors, np.full((len(mesh.colors), 1), 255, np.uint8)], axis=1)
        primitive = {
            "attributes": {
                "POSITION": gltf.add_accessor(
                    (mesh.vertices * _FLIP_YZ_32).astype(np.float32), "VEC3", bounds=True
                ),
                "NORMAL": gltf.add_accessor(
                    (mesh.normals * _FLIP_YZ_32).astype(np.float32), "VEC3"
                ),
                "COLOR_0": gltf.add_accessor(rgba, "VEC4", normalized=True),
            },
            "indices": gltf.add_accessor(
                np.ascontiguousarray(mesh.faces, np.uint32).reshape(-1), "SCALAR", target=34963
            ),
            "mode": _TRIANGLES,
            "material": gltf.add_lit_material("surface"),
        }
        gltf.add_node({"name": "mesh", "mesh": gltf.add_mesh("mesh", primitive)})
    return gltf.write(path)


def _rows(tag: bytes, array: np.ndarray, fmt: str, joined: bool = False) -> bytes:
    if not len(array):
        return b""
    line = tag + b" " + (fmt if joined else " ".join([fmt] * array.shape[1])).encode() + b"\n"
    return b"".join(line % tuple(row) for row in array.tolist())


def _write_whole(path: Path, parts: list[bytes]) -> Path:
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "wb") as file:
            file.writelines(parts)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
