"""PUT /api/jobs/{id}/scale: a job's scene in metres. Every download made after it is read back
and compared with the same download in the engine's units: positions, camera translations and
depths times the factor, intrinsics and rotations unchanged; a second PUT replaces the first,
DELETE goes back, refusals say why, and a restart keeps the scale."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image
from plyfile import PlyData
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.engines.base import Photo
from aetherscan.reconstruction import View
from aetherscan.server.results import drop_other_scales, scale_dir, use_scale

PHOTOS = {
    "a.jpg": photo_bytes((200, 30, 30)),
    "b.jpg": photo_bytes((30, 200, 30)),
    "c.jpg": photo_bytes((30, 30, 200)),
}


@dataclass
class DepthEngine(ScriptedEngine):
    """TEST DOUBLE: the scripted engine with a depth map per view, so that depth.zip exists."""

    def _view(self, index: int, photo: Photo) -> View:
        view = super()._view(index, photo)
        view.depth = np.linspace(1.0, 5.0, 48, dtype=np.float32).reshape(6, 8) + index
        view.depth[0, 0] = 0.0  # unknown
        view.depth_K = np.array([[8.0, 0, 4], [0, 8, 3], [0, 0, 1]])
        return view


@pytest.fixture
def engine() -> ScriptedEngine:
    return DepthEngine(points_per_view=300)


def make_job(server: RunningServer, photos: dict[str, bytes] = PHOTOS) -> dict:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    created = server.http.post("/api/jobs", files=files)
    assert created.status_code == 201, created.text
    status = server.wait_for_state(created.json()["job_id"])
    assert status["state"] == "done"
    return status


def put_scale(server: RunningServer, job_id: str, body: object) -> dict:
    answer = server.http.put(f"/api/jobs/{job_id}/scale", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def eventually(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# Reading every download back ------------------------------------------------------------------


def ply_xyz(data: bytes) -> np.ndarray:
    vertex = PlyData.read(io.BytesIO(data))["vertex"]
    return np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)


def glb_positions_and_nodes(data: bytes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + json_length])
    binary = data[20 + json_length + 8 :]
    mesh = next(m for m in document["meshes"] if m["name"] == "points")
    accessor = document["accessors"][mesh["primitives"][0]["attributes"]["POSITION"]]
    view = document["bufferViews"][accessor["bufferView"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    xyz = np.frombuffer(binary, np.float32, accessor["count"] * 3, start).reshape(-1, 3)
    nodes = {
        node["name"]: np.array(node["matrix"]).reshape(4, 4).T
        for node in document["nodes"]
        if "matrix" in node
    }
    return xyz.astype(np.float64), nodes


def colmap_text(data: bytes) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """images.txt as name -> (qw qx qy qz tx ty tz), points3D.txt as id -> (x y z)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        images_text = archive.read("sparse/0/images.txt").decode()
        points_text = archive.read("sparse/0/points3D.txt").decode()
    lines = [line for line in images_text.splitlines() if not line.startswith("#")]
    images = {}
    for line in lines[::2]:  # each image's line, then its line of 2D points
        fields = line.split()
        images[fields[9]] = np.array(fields[1:8], float)
    points = {}
    for line in points_text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split()
            points[int(fields[0])] = np.array(fields[1:4], float)
    return images, points


def colmap_binary(data: bytes, folder: Path) -> pycolmap.Reconstruction:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
    return pycolmap.Reconstruction(folder / "sparse" / "0")


def transforms(data: bytes) -> tuple[dict, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        document = json.loads(archive.read("transforms.json"))
        xyz = ply_xyz(archive.read("scene.ply"))
    return document, xyz


def depth_maps(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        index = json.loads(archive.read("depth.json"))
        maps = {
            entry["name"]: np.load(io.BytesIO(archive.read(entry["npz"])))["depth"]
            for entry in index["views"]
        }
    return index, maps


def read_all(server: RunningServer, status: dict, folder: Path) -> dict:
    """Every download of the job, read back into numbers."""
    get = {name: server.http.get(url) for name, url in status["downloads"].items()}
    for name, answer in get.items():
        assert answer.status_code == 200, (name, answer.text)
    images, points = colmap_text(get["colmap_text"].content)
    document, nerf_xyz = transforms(get["nerfstudio"].content)
    glb_xyz, glb_nodes = glb_positions_and_nodes(get["glb"].content)
    depth_index, maps = depth_maps(get["depth"].content)
    with zipfile.ZipFile(io.BytesIO(get["all"].content)) as archive:
        everything = {
            "readme": archive.read("README.txt").decode(),
            "cameras": json.loads(archive.read("cameras.json")),
            "xyz": ply_xyz(archive.read("scene.ply")),
            "images": colmap_text_of(archive),
        }
    return {
        "ply": ply_xyz(get["ply"].content),
        "ply_ascii": ply_xyz(get["ply_ascii"].content),
        "glb": glb_xyz,
        "glb_nodes": glb_nodes,
        "cameras": get["cameras"].json(),
        "images_txt": images,
        "points3D_txt": points,
        "colmap": colmap_binary(get["colmap"].content, folder),
        "transforms": document,
        "nerf_xyz": nerf_xyz,
        "depth_index": depth_index,
        "depth": maps,
        "all": everything,
    }


def colmap_text_of(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    lines = archive.read("sparse/0/images.txt").decode().splitlines()
    lines = [line for line in lines if not line.startswith("#")]
    return {line.split()[9]: np.array(line.split()[1:8], float) for line in lines[::2]}


def assert_scaled(scaled: dict, plain: dict, factor: float) -> None:
    """``scaled`` is ``plain`` with every length times ``factor`` and nothing else changed."""
    close = {"rtol": 1e-5, "atol": 1e-6}
    for key in ("ply", "ply_ascii", "glb", "nerf_xyz"):
        np.testing.assert_allclose(scaled[key], plain[key] * factor, **close, err_msg=key)
    np.testing.assert_allclose(scaled["all"]["xyz"], plain["all"]["xyz"] * factor, **close)
    for name, matrix in plain["glb_nodes"].items():  # camera nodes: centres scaled, axes not
        np.testing.assert_allclose(scaled["glb_nodes"][name][:3, :3], matrix[:3, :3], **close)
        np.testing.assert_allclose(
            scaled["glb_nodes"][name][:3, 3], matrix[:3, 3] * factor, **close
        )
    for cameras in (scaled["cameras"], scaled["all"]["cameras"]):
        assert cameras["unit"] == ("metre" if factor != 1 else None)
        for camera, before in zip(cameras["cameras"], plain["cameras"]["cameras"], strict=True):
            pose, old = np.array(camera["cam_from_world"]), np.array(before["cam_from_world"])
            np.testing.assert_allclose(pose[:3, :3], old[:3, :3], **close)
            np.testing.assert_allclose(pose[:3, 3], old[:3, 3] * factor, **close)
            assert camera["K"] == before["K"]
    for images in (scaled["images_txt"], scaled["all"]["images"]):
        for name, fields in plain["images_txt"].items():
            np.testing.assert_allclose(images[name][:4], fields[:4], **close)  # qvec
            np.testing.assert_allclose(images[name][4:], fields[4:] * factor, **close)  # tvec
    assert scaled["points3D_txt"].keys() == plain["points3D_txt"].keys()  # the same pixels
    for point_id, xyz in plain["points3D_txt"].items():
        np.testing.assert_allclose(scaled["points3D_txt"][point_id], xyz * factor, **close)
    binary, plain_binary = scaled["colmap"], plain["colmap"]
    assert binary.num_points3D() == plain_binary.num_points3D() > 0
    for image_id, image in plain_binary.images.items():
        pose = binary.images[image_id].cam_from_world().matrix()
        old = image.cam_from_world().matrix()
        np.testing.assert_allclose(pose[:, :3], old[:, :3], atol=1e-9)
        np.testing.assert_allclose(pose[:, 3], old[:, 3] * factor, **close)
    for point_id, point in plain_binary.points3D.items():
        np.testing.assert_allclose(binary.points3D[point_id].xyz, point.xyz * factor, **close)
    for frame, before in zip(
        scaled["transforms"]["frames"], plain["transforms"]["frames"], strict=True
    ):
        matrix, old = np.array(frame["transform_matrix"]), np.array(before["transform_matrix"])
        np.testing.assert_allclose(matrix[:3, :3], old[:3, :3], **close)
        np.testing.assert_allclose(matrix[:3, 3], old[:3, 3] * factor, **close)
        assert frame["fl_x"] == before["fl_x"] and frame["cx"] == before["cx"]
    for name, depth in plain["depth"].items():
        np.testing.assert_allclose(scaled["depth"][name], depth * factor, **close)
    assert scaled["depth_index"]["unit"] == ("metre" if factor != 1 else None)


# The tests -----------------------------------------------------------------------------------


def test_every_download_after_a_scale_is_in_metres(server, tmp_path):
    status = make_job(server)
    job_id = status["job_id"]
    assert status["scale"] is None
    plain = read_all(server, status, tmp_path / "plain")
    assert plain["cameras"]["unit"] is None and "no metric scale" in plain["all"]["readme"]
    points_before = server.http.get(f"/api/jobs/{job_id}/points").content

    scaled_status = put_scale(server, job_id, {"metres_per_unit": 0.0123})
    assert scaled_status["scale"] == {"metres_per_unit": 0.0123}
    assert server.http.get(f"/api/jobs/{job_id}").json()["scale"] == {"metres_per_unit": 0.0123}
    assert scaled_status["downloads"] == status["downloads"]  # the same URLs
    scaled = read_all(server, scaled_status, tmp_path / "scaled")
    assert_scaled(scaled, plain, 0.0123)
    assert "in metres" in scaled["all"]["readme"]
    # The viewer's points stay in the engine's units; it reads the factor from the status.
    assert server.http.get(f"/api/jobs/{job_id}/points").content == points_before


def test_two_points_and_their_length_set_the_scale(server, tmp_path):
    status = make_job(server)
    job_id = status["job_id"]
    plain = read_all(server, status, tmp_path / "plain")
    body = {"points": [[0.5, -1.0, 2.0], [0.5, 2.0, 6.0]], "length_m": 0.3}  # 5 units apart
    answer = put_scale(server, job_id, body)
    assert answer["scale"]["metres_per_unit"] == pytest.approx(0.3 / 5, rel=1e-12)
    assert_scaled(read_all(server, answer, tmp_path / "scaled"), plain, 0.3 / 5)


def test_a_second_scale_replaces_the_first_and_delete_goes_back(server, tmp_path):
    status = make_job(server)
    job_id = status["job_id"]
    plain = read_all(server, status, tmp_path / "plain")
    put_scale(server, job_id, {"metres_per_unit": 2.0})
    assert_scaled(read_all(server, status, tmp_path / "first"), plain, 2.0)
    second = put_scale(server, job_id, {"metres_per_unit": 0.5})
    assert second["scale"] == {"metres_per_unit": 0.5}
    assert_scaled(read_all(server, status, tmp_path / "second"), plain, 0.5)
    result = server.settings.data_dir / "jobs" / job_id / "result"
    # The first scale's files go once its downloads have let go, just after their responses.
    assert eventually(
        lambda: [p.name for p in result.glob("metres-*")] == [scale_dir(result, 0.5).name]
    )

    removed = server.http.delete(f"/api/jobs/{job_id}/scale")
    assert removed.status_code == 200 and removed.json()["scale"] is None
    assert_scaled(read_all(server, status, tmp_path / "back"), plain, 1.0)
    assert eventually(lambda: not list(result.glob("metres-*")))


REFUSED = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "a JSON object"),
    (b"{}", "gives no scale"),
    (b'{"metres_per_unit": 0}', "metres_per_unit must be a positive finite number"),
    (b'{"metres_per_unit": -2}', "positive finite"),
    (b'{"metres_per_unit": 1e999}', "positive finite"),
    (b'{"metres_per_unit": NaN}', "positive finite"),
    (b'{"metres_per_unit": "0.1"}', "positive finite"),
    (b'{"metres_per_unit": true}', "positive finite"),
    (b'{"metres_per_unit": 1, "length_m": 1}', "not both"),
    (b'{"points": [[0, 0, 0], [1, 0, 0]]}', "length_m is missing"),
    (b'{"length_m": 0.3}', "points is missing"),
    (b'{"points": [[0, 0, 0]], "length_m": 0.3}', "points must be two points"),
    (b'{"points": [[0, 0, 0], [1, 0]], "length_m": 0.3}', "two points"),
    (b'{"points": [[0, 0, 0], [1, 0, 0], [2, 0, 0]], "length_m": 1}', "two points"),
    (b'{"points": [[0, 0, 0], [1, 0, Infinity]], "length_m": 1}', "finite numbers"),
    (b'{"points": [[0, 0, 0], [1, 0, "x"]], "length_m": 1}', "finite numbers"),
    (b'{"points": [[0, 0, 0], [1e308, 0, 0]], "length_m": 1e-320}', "a usable factor"),
    (b'{"points": [[1, 2, 3], [1, 2, 3]], "length_m": 0.3}', "the same point"),
    (b'{"points": [[0, 0, 0], [1, 0, 0]], "length_m": 0}', "length_m must be a positive"),
    (b'{"points": [[0, 0, 0], [1, 0, 0]], "length_m": -1}', "length_m must be a positive"),
    (b'{"points": [[0, 0, 0], [1, 0, 0]], "length_m": 1e999}', "length_m must be a positive"),
]


def test_bad_scales_are_refused_with_a_sentence_and_change_nothing(server):
    job_id = make_job(server)["job_id"]
    put_scale(server, job_id, {"metres_per_unit": 0.25})
    for body, words in REFUSED:
        answer = server.http.put(
            f"/api/jobs/{job_id}/scale", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, (body, answer.text)
        detail = answer.json()["detail"]
        assert words in detail, (body, detail)
        assert "\n" not in detail and len(detail) < 400
    assert server.http.get(f"/api/jobs/{job_id}").json()["scale"] == {"metres_per_unit": 0.25}


def test_only_a_finished_job_takes_a_scale(server):
    files = [("files", ("fail.jpg", PHOTOS["a.jpg"], "image/jpeg"))] * 2
    failed = server.http.post("/api/jobs", files=files).json()["job_id"]
    assert server.wait_for_state(failed)["state"] == "failed"
    for answer in (
        server.http.put(f"/api/jobs/{failed}/scale", json={"metres_per_unit": 1.0}),
        server.http.delete(f"/api/jobs/{failed}/scale"),
    ):
        assert answer.status_code == 409
        assert "the job has no results: it is failed" in answer.json()["detail"]
    unknown = server.http.put("/api/jobs/no-such-job-0000000/scale", json={"metres_per_unit": 1})
    assert unknown.status_code == 404 and "no job with this id" in unknown.json()["detail"]


def test_the_scale_survives_a_restart_and_an_older_index_gets_its_column(tmp_path):
    data = tmp_path / "data"
    with RunningServer(make_settings(data), DepthEngine(points_per_view=200)) as server:
        older = make_job(server)["job_id"]
        job = make_job(server)
        plain = read_all(server, job, tmp_path / "plain")
        put_scale(server, job["job_id"], {"metres_per_unit": 0.04})
    with RunningServer(make_settings(data), DepthEngine()) as server:
        status = server.http.get(f"/api/jobs/{job['job_id']}").json()
        assert status["scale"] == {"metres_per_unit": 0.04}
        assert_scaled(read_all(server, status, tmp_path / "after"), plain, 0.04)

    # An index written before scales existed has no such column: it is added at start.
    with sqlite3.connect(data / "index.sqlite3") as db:
        db.execute("ALTER TABLE jobs DROP COLUMN metres_per_unit")
    with RunningServer(make_settings(data), DepthEngine()) as server:
        assert server.http.get(f"/api/jobs/{older}").json()["scale"] is None
        assert put_scale(server, older, {"metres_per_unit": 3.0})["scale"] == {
            "metres_per_unit": 3.0
        }


def test_files_of_an_old_scale_stay_while_a_download_uses_them(tmp_path):
    result = tmp_path / "result"
    old, new = scale_dir(result, 0.5), scale_dir(result, 0.25)
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "scene.ply").write_bytes(b"ply")
    sending = use_scale(result, 0.5)
    drop_other_scales(result, 0.25)  # the scale changed while scene.ply at 0.5 is sent
    assert (old / "scene.ply").read_bytes() == b"ply" and new.is_dir()
    sending()
    assert not old.exists() and new.is_dir()
    sending()  # letting go twice is harmless
    # A folder set again before its last download ended is kept.
    again = use_scale(result, 0.25)
    drop_other_scales(result, 0.5)
    drop_other_scales(result, 0.25)
    again()
    assert new.is_dir()
    assert math.isclose(float.fromhex(new.name.removeprefix("metres-")), 0.25)


def test_files_left_at_an_old_scale_go_after_the_next_download(server):
    status = make_job(server)
    job_id = status["job_id"]
    put_scale(server, job_id, {"metres_per_unit": 0.5})
    result = server.settings.data_dir / "jobs" / job_id / "result"
    # What a download that began before the scale changed, or a killed process, left behind.
    left = scale_dir(result, 9.0)
    left.mkdir()
    (left / "scene.ply").write_bytes(b"old")
    assert server.http.get(status["downloads"]["ply"]).status_code == 200
    assert eventually(lambda: not left.exists())
    assert (scale_dir(result, 0.5) / "scene.ply").is_file()


def noise_jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (1200, 1600, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_download_being_sent_when_the_scale_changes_is_sent_whole(server, tmp_path):
    # Photos of noise make a zip of several MB, more than the sockets buffer.
    status = make_job(server, {f"{i}.jpg": noise_jpeg(i) for i in range(4)})
    job_id = status["job_id"]
    put_scale(server, job_id, {"metres_per_unit": 0.5})
    url = status["downloads"]["all"]
    whole = server.http.get(url).content
    result = server.settings.data_dir / "jobs" / job_id / "result"
    with server.http.stream("GET", url) as answer:
        chunks = answer.iter_bytes(1024)
        received = next(chunks)
        put_scale(server, job_id, {"metres_per_unit": 0.25})  # meanwhile
        received += b"".join(chunks)
    assert len(whole) > 8_000_000 and received == whole
    with zipfile.ZipFile(io.BytesIO(received)) as archive:
        assert json.loads(archive.read("cameras.json"))["unit"] == "metre"
    assert eventually(lambda: not scale_dir(result, 0.5).exists())
    later = server.http.get(f"/api/jobs/{job_id}/files/cameras.json").json()
    first = server.http.get(f"/api/jobs/{job_id}/files/cameras.json")  # made at 0.25 now
    assert later == first.json()
    assert scale_dir(result, 0.25).is_dir()
