"""glTF 2.0 binary (.glb): the coloured points and one camera frustum per photo.

Axes: glTF is y up, and a glTF camera looks down its -z axis. The scene is the reconstruction's
world turned by ``FLIP_YZ`` (x, y, z -> x, -y, -z, a rotation of 180 degrees about x), so that a
world that is the first camera's OpenCV frame (Fast3R) opens upright with that camera looking
into the screen. Each photo is a node whose matrix is ``FLIP_YZ @ world_from_opengl_cam(
cam_from_world)``, holding its frustum (lines, in the camera's own axes, apex at the centre,
the far rectangle at the image corners, a small triangle on the top edge); a second node
``<name> camera`` with the same matrix holds a glTF perspective camera with the photo's
vertical field of view (glTF cameras have no principal point offset). Camera nodes are roots,
not children, because some readers (trimesh) take a camera node's matrix as its world pose.

The points are one POINTS primitive with POSITION (float) and COLOR_0 (normalised RGBA bytes);
materials are unlit (KHR_materials_unlit, optional). The container is written here: a
12-byte header, the JSON chunk, the BIN chunk, each padded to 4 bytes.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from aetherscan.geometry.camera import OPENCV_TO_OPENGL as FLIP_YZ
from aetherscan.geometry.camera import world_from_opengl_cam
from aetherscan.reconstruction import Reconstruction, View

_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_POINTS, _LINES = 0, 1
_FRUSTUM_COLOR = [1.0, 0.45, 0.1, 1.0]
_FLIP_YZ_32 = FLIP_YZ.diagonal()[:3].astype(np.float32)  # world x, y, z -> glTF x, -y, -z
_FRUSTUM_SCALE = 0.1  # frustum depth as a fraction of the typical point depth


def export_glb(reconstruction: Reconstruction, path: Path, *, min_confidence: float = 0.0) -> Path:
    cloud = reconstruction.point_cloud(min_confidence)
    gltf = _Gltf()
    if len(cloud):
        position = gltf.add_accessor(cloud.xyz * _FLIP_YZ_32, "VEC3", bounds=True)
        rgba = np.concatenate([cloud.rgb, np.full((len(cloud), 1), 255, np.uint8)], axis=1)
        primitive = {
            "attributes": {
                "POSITION": position,
                "COLOR_0": gltf.add_accessor(rgba, "VEC4", normalized=True),
            },
            "mode": _POINTS,
            "material": gltf.add_unlit_material("points", [1.0, 1.0, 1.0, 1.0]),
        }
        gltf.add_node({"name": "points", "mesh": gltf.add_mesh("points", primitive)})
    depth = _FRUSTUM_SCALE * _typical_depth(reconstruction)
    frustum_material = None
    for view in reconstruction.views:
        if frustum_material is None:
            frustum_material = gltf.add_unlit_material("frustums", _FRUSTUM_COLOR)
        vertices, indices = _frustum_lines(view, depth)
        primitive = {
            "attributes": {"POSITION": gltf.add_accessor(vertices, "VEC3", bounds=True)},
            "indices": gltf.add_accessor(indices, "SCALAR", target=_ELEMENT_ARRAY_BUFFER),
            "mode": _LINES,
            "material": frustum_material,
        }
        pose = FLIP_YZ @ world_from_opengl_cam(view.cam_from_world)
        matrix = pose.T.reshape(-1).tolist()  # glTF matrices are column-major
        gltf.add_node(
            {"name": view.name, "matrix": matrix, "mesh": gltf.add_mesh(view.name, primitive)}
        )
        camera = gltf.add_camera(f"{view.name} camera", view, znear=0.01 * depth)
        gltf.add_node({"name": f"{view.name} camera", "matrix": matrix, "camera": camera})
    return gltf.write(path)


def _typical_depth(reconstruction: Reconstruction) -> float:
    """Median depth of the points in their own cameras (1.0 when there are none)."""
    depths = []
    for view in reconstruction.views:
        z = view.points.astype(np.float64) @ view.cam_from_world[2, :3] + view.cam_from_world[2, 3]
        z = z[z > 0]
        if len(z):
            depths.append(float(np.median(z)))
    return float(np.median(depths)) if depths else 1.0


def _frustum_lines(view: View, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Frustum vertices in the camera's OpenGL axes and line indices: edges plus an up mark."""
    w, h = view.width, view.height
    pixels = np.array(
        [[0, 0], [w, 0], [w, h], [0, h], [0.25 * w, 0], [0.75 * w, 0], [0.5 * w, -0.25 * h]]
    )
    fx, fy, cx, cy = view.K[0, 0], view.K[1, 1], view.K[0, 2], view.K[1, 2]
    opencv = np.stack(
        [(pixels[:, 0] - cx) / fx * depth, (pixels[:, 1] - cy) / fy * depth, np.full(7, depth)], 1
    )
    vertices = np.concatenate([np.zeros((1, 3)), opencv * FLIP_YZ.diagonal()[:3]])
    apex, corners, mark = 0, [1, 2, 3, 4], [5, 6, 7]
    lines = [(apex, c) for c in corners]
    lines += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    lines += [(mark[i], mark[(i + 1) % 3]) for i in range(3)]
    return vertices.astype(np.float32), np.array(lines, np.uint16).reshape(-1)


class _Gltf:
    """A glTF document with one binary buffer, built up accessor by accessor."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "AetherScan"},
            "scene": 0,
            "scenes": [{"nodes": []}],
            "nodes": [],
            "meshes": [],
            "materials": [],
            "cameras": [],
            "accessors": [],
            "bufferViews": [],
            "buffers": [{"byteLength": 0}],
        }
        self.chunks: list[bytes] = []
        self.length = 0

    def add_accessor(
        self,
        array: np.ndarray,
        kind: str,
        *,
        normalized: bool = False,
        bounds: bool = False,
        target: int = _ARRAY_BUFFER,
    ) -> int:
        component = {
            np.float32: _FLOAT,
            np.uint8: _UNSIGNED_BYTE,
            np.uint16: _UNSIGNED_SHORT,
            np.uint32: _UNSIGNED_INT,
        }
        data = np.ascontiguousarray(array).tobytes()
        self.document["bufferViews"].append(
            {"buffer": 0, "byteOffset": self.length, "byteLength": len(data), "target": target}
        )
        self._append(data)
        accessor: dict[str, Any] = {
            "bufferView": len(self.document["bufferViews"]) - 1,
            "componentType": component[array.dtype.type],
            "count": len(array),
            "type": kind,
        }
        if normalized:
            accessor["normalized"] = True
        if bounds:
            accessor["min"] = array.min(axis=0).tolist()
            accessor["max"] = array.max(axis=0).tolist()
        self.document["accessors"].append(accessor)
        return len(self.document["accessors"]) - 1

    def add_unlit_material(self, name: str, color: list[float]) -> int:
        pbr = {"baseColorFactor": color, "metallicFactor": 0.0}
        self.document["materials"].append(
            {"name": name, "pbrMetallicRoughness": pbr, "extensions": {"KHR_materials_unlit": {}}}
        )
        self.document["extensionsUsed"] = ["KHR_materials_unlit"]
        return len(self.document["materials"]) - 1

    def add_lit_material(self, name: str) -> int:
        """A matte material that shows the vertex colours (COLOR_0) under the viewer's light."""
        pbr = {
            "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
            "metallicFactor": 0.0,
            "roughnessFactor": 1.0,
        }
        self.document["materials"].append(
            {"name": name, "pbrMetallicRoughness": pbr, "doubleSided": True}
        )
        return len(self.document["materials"]) - 1

    def add_mesh(self, name: str, primitive: dict[str, Any]) -> int:
        self.document["meshes"].append({"name": name, "primitives": [primitive]})
        return len(self.document["meshes"]) - 1

    def add_camera(self, name: str, view: View, *, znear: float) -> int:
        yfov = 2.0 * math.atan(view.height / (2.0 * float(view.K[1, 1])))
        perspective = {"yfov": yfov, "aspectRatio": view.width / view.height, "znear": znear}
        self.document["cameras"].append(
            {"name": name, "type": "perspective", "perspective": perspective}
        )
        return len(self.document["cameras"]) - 1

    def add_node(self, node: dict[str, Any]) -> int:
        self.document["nodes"].append(node)
        index = len(self.document["nodes"]) - 1
        self.document["scenes"][0]["nodes"].append(index)
        return index

    def _append(self, data: bytes) -> None:
        # Every bufferView starts on a 4-byte boundary, as glTF asks of vertex attributes.
        padding = b"\0" * (-len(data) % 4)
        self.chunks += [data, padding]
        self.length += len(data) + len(padding)

    def write(self, path: Path) -> Path:
        # glTF allows no empty arrays and no empty buffer: leave out what this scene lacks.
        document = {key: value for key, value in self.document.items() if value != []}
        if self.length:
            document["buffers"] = [{"byteLength": self.length}]
        else:
            del document["buffers"]
        if not document["scenes"][0]["nodes"]:
            document["scenes"] = [{}]
        text = json.dumps(document, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + (8 + self.length if self.length else 0)
        partial = path.with_name(path.name + ".part")
        with open(partial, "wb") as f:
            f.write(struct.pack("<4sII", b"glTF", 2, total))
            f.write(struct.pack("<I4s", len(text), b"JSON"))
            f.write(text)
            if self.length:
                f.write(struct.pack("<I4s", self.length, b"BIN\0"))
                f.writelines(self.chunks)
        partial.replace(path)
        return path
