"""The REST API: create a job from a multipart upload, read it, download its results, delete it;
refusals with HTTP statuses and sentences; persistence across restarts and expiry."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from plyfile import PlyData
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.protocol import decode_point_frame, split_frames
from aetherscan.server.storage import RESTARTED, RESTARTED_UPLOADING, Storage


def files(photos: dict[str, bytes]) -> list:
    return [("files", (name, data, "image/jpeg")) for name, data in photos.items()]


def test_health_info_and_openapi(server):
    assert server.http.get("/api/health").json() == {"status": "ok"}
    info = server.http.get("/api/info").json()
    assert info["engine"] == "scripted" and info["protocol"] == 1
    assert {"ply", "cameras"} <= set(info["formats"])
    assert info["limits"]["max_photo_mb"] == server.settings.max_photo_mb
    schema = server.http.get("/openapi.json").json()
    assert "/api/jobs/{job_id}/files/{file_name}" in schema["paths"]
    assert server.http.get("/docs").status_code == 200


def test_create_read_download_delete(server, engine, three_photos):
    created = server.http.post("/api/jobs", files=files(three_photos))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] in ("queued", "running") and len(job["job_id"]) >= 20
    assert [p["name"] for p in job["photos"]] == list(three_photos)

    status = server.wait_for_state(job["job_id"])
    assert status["state"] == "done" and status["error"] is None
    assert status["num_points"] == 3 * engine.points_per_view
    assert [v["name"] for v in status["views"]] == list(three_photos)
    assert status["finished_at"] and status["expires_at"] > status["finished_at"]

    ply = server.http.get(status["downloads"]["ply"])
    assert ply.status_code == 200
    assert 'filename="image-3-photos-' in ply.headers["content-disposition"]
    vertex = PlyData.read(__import__("io").BytesIO(ply.content))["vertex"]
    assert vertex.count == status["num_points"]
    assert {"x", "y", "z", "red", "green", "blue", "confidence"} <= set(vertex.data.dtype.names)

    cameras = server.http.get(status["downloads"]["cameras"]).json()
    assert [c["name"] for c in cameras["cameras"]] == list(three_photos)
    assert np.shape(cameras["cameras"][0]["cam_from_world"]) == (4, 4)

    blob = server.http.get(f"/api/jobs/{job['job_id']}/points?format=binary").content
    frames = [decode_point_frame(frame) for frame in split_frames(blob)]
    assert sum(len(f.xyz) for f in frames) == status["num_points"]
    assert [f.view_index for f in frames] == [0, 1, 2]

    assert server.http.delete(f"/api/jobs/{job['job_id']}").status_code == 204
    assert server.http.get(f"/api/jobs/{job['job_id']}").status_code == 404
    assert server.http.get(status["downloads"]["ply"]).status_code == 404
    assert server.http.delete(f"/api/jobs/{job['job_id']}").status_code == 404
    # The files go as soon as the last download has let go of them (it may still be closing
    # its response when the delete arrives).
    folder = server.settings.data_dir / "jobs" / job["job_id"]
    deadline = time.monotonic() + 5
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not folder.exists()


def test_a_websocket_job_is_readable_over_rest(server, three_photos):
    with server.connect() as client:
        client.send({"type": "hello", "features": ["job"]})
        client.receive()
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        complete = client.receive_until("reconstruction_complete")[-1]
    status = server.http.get(f"/api/jobs/{complete['job_id']}").json()
    assert status["state"] == "done" and status["num_points"] == complete["total_points"]
    for url in complete["downloads"].values():
        assert server.http.get(url).status_code == 200


@pytest.mark.parametrize(
    "photos, status, words",
    [
        ({"a.jpg": photo_bytes()}, 400, "at least 2 photos; 1 received"),
        ({"a.jpg": photo_bytes(), "notes.txt": b"hello"}, 400, "notes.txt: not an image"),
        ({"a.jpg": photo_bytes(), "empty.jpg": b""}, 400, "empty.jpg: the file is empty"),
        ({"a.jpg": photo_bytes(), "tiny.jpg": photo_bytes(size=(1, 1))}, 400, "1x1 pixels"),
    ],
)
def test_bad_uploads_are_refused_with_a_sentence(server, photos, status, words):
    reply = server.http.post("/api/jobs", files=files(photos))
    assert reply.status_code == status and words in reply.json()["detail"]
    assert not any((server.settings.data_dir / "jobs").iterdir()), "nothing left behind"


def test_requests_without_files_or_content_length(server):
    reply = server.http.post("/api/jobs", data={"x": "1"})
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("files: Field required; send the photos as")
    chunked = server.http.post("/api/jobs", content=iter([b"--x\r\n"]))
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]


def test_size_limits_over_rest(tmp_path):
    settings = make_settings(tmp_path, max_photo_mb=0.001, max_job_mb=0.05)
    with RunningServer(settings, ScriptedEngine()) as server:
        big = {"a.jpg": photo_bytes(size=(400, 300)), "b.jpg": photo_bytes()}
        reply = server.http.post("/api/jobs", files=files(big))
        assert reply.status_code == 413 and "max_photo_mb" in reply.json()["detail"]
        huge = server.http.post("/api/jobs", content=b"x" * 2_000_000)
        assert huge.status_code == 413 and "max_job_mb" in huge.json()["detail"]


def test_unknown_and_malformed_ids_are_404(server):
    for job_id in ("nope", "A" * 22, "..%2F..%2Fetc", "%00"):
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        assert server.http.get(f"/api/jobs/{job_id}/files/scene.ply").status_code == 404
        assert server.http.delete(f"/api/jobs/{job_id}").status_code == 404


def test_download_of_an_unfinished_job_or_unknown_file(tmp_path, three_photos):
    gate = threading.Event()
    with RunningServer(make_settings(tmp_path), ScriptedEngine(gate=gate)) as server:
        job_id = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
        reply = server.http.get(f"/api/jobs/{job_id}/files/scene.ply")
        assert reply.status_code == 409 and "it is" in reply.json()["detail"]
        gate.set()
        server.wait_for_state(job_id)
        for name in ("../index.sqlite3", "reconstruction.npz", "nothing.txt"):
            reply = server.http.get(f"/api/jobs/{job_id}/files/{name}")
            assert reply.status_code == 404, name


def test_a_failed_job_says_why(server):
    photos = {"a.jpg": photo_bytes(), "fail.jpg": photo_bytes()}
    job_id = server.http.post("/api/jobs", files=files(photos)).json()["job_id"]
    status = server.wait_for_state(job_id)
    assert status["state"] == "failed" and "scripted to fail" in status["error"]
    assert status["downloads"] == {}
    assert not (server.settings.data_dir / "jobs" / job_id / "photos").exists()


def test_deleting_a_running_job_cancels_it(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server:
        job_id = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
        while server.http.get(f"/api/jobs/{job_id}").json()["state"] != "running":
            time.sleep(0.01)
        assert server.http.delete(f"/api/jobs/{job_id}").status_code == 202  # running
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        # The worker is free again and the folder goes away.
        gate.set()
        second = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
        assert server.wait_for_state(second)["state"] == "done"
        assert not (server.settings.data_dir / "jobs" / job_id).exists()


def test_finished_jobs_survive_a_restart_and_running_ones_fail_with_a_reason(
    tmp_path, three_photos
):
    data = tmp_path / "data"
    with RunningServer(make_settings(data), ScriptedEngine()) as server:
        job_id = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
        before = server.wait_for_state(job_id)
        ply = server.http.get(before["downloads"]["ply"]).content

    # A process killed while jobs were running or uploading left them so in the index.
    storage = Storage(data)
    for state in ("running", "uploading"):
        storage.create_job(f"{state}-job-0000000000", engine="scripted", client="x", source="ws")
        storage.set_state(f"{state}-job-0000000000", state)
    (data / "jobs" / "running-job-0000000000" / "photos" / "0000.jpg").write_bytes(b"x")
    (data / "jobs" / "stray-folder-000000000").mkdir()
    storage._db.close()  # no clean shutdown

    with RunningServer(make_settings(data), ScriptedEngine()) as server:
        after = server.http.get(f"/api/jobs/{job_id}").json()
        assert after == before
        assert server.http.get(before["downloads"]["ply"]).content == ply
        running = server.http.get("/api/jobs/running-job-0000000000").json()
        assert running["state"] == "failed" and running["error"] == RESTARTED
        uploading = server.http.get("/api/jobs/uploading-job-0000000000").json()
        assert uploading["error"] == RESTARTED_UPLOADING
    assert not (data / "jobs" / "running-job-0000000000" / "photos").exists()
    assert not (data / "jobs" / "stray-folder-000000000").exists()


def test_results_expire(tmp_path, three_photos):
    settings = make_settings(tmp_path, result_ttl_hours=0.5 / 3600)  # half a second
    with RunningServer(settings, ScriptedEngine()) as server:
        job_id = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
        status = server.wait_for_state(job_id)
        assert status["state"] == "done"
        deadline = time.monotonic() + 5
        while server.http.get(f"/api/jobs/{job_id}").status_code != 404:
            assert time.monotonic() < deadline, "the job did not expire"
            time.sleep(0.1)
        assert not (settings.data_dir / "jobs" / job_id).exists()


def test_cors_origins_from_settings(tmp_path):
    settings = make_settings(tmp_path, cors_origins=["http://localhost:3000"])
    with RunningServer(settings, ScriptedEngine()) as server:
        allowed = server.http.get("/api/health", headers={"Origin": "http://localhost:3000"})
        other = server.http.get("/api/health", headers={"Origin": "http://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "access-control-allow-origin" not in other.headers


def test_the_viewer_and_three_are_served(tmp_path):
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>viewer</title>")
    (web / "js" / "protocol.js").write_text("export const X = 1;")
    three = web / "node_modules" / "three" / "build"
    three.mkdir(parents=True)
    (three / "three.module.js").write_text("export const REVISION = '0';")
    settings = make_settings(tmp_path / "data", web_dir=web)
    with RunningServer(settings, ScriptedEngine()) as server:
        page = server.http.get("/")
        assert page.status_code == 200 and "viewer" in page.text
        assert server.http.get("/js/protocol.js").text == "export const X = 1;"
        module = server.http.get("/vendor/three/build/three.module.js")
        assert module.status_code == 200 and "javascript" in module.headers["content-type"]
        assert server.http.get("/api/health").json() == {"status": "ok"}
        assert server.http.get("/../../etc/passwd").status_code == 404


def test_without_a_viewer_the_root_page_explains(server):
    page = server.http.get("/")
    assert page.status_code == 200 and "/docs" in page.text


def test_job_status_json_is_the_documented_shape(server, three_photos):
    job_id = server.http.post("/api/jobs", files=files(three_photos)).json()["job_id"]
    status = server.wait_for_state(job_id)
    assert list(status) == [
        "job_id", "state", "engine", "stage", "fraction", "message", "position", "photos",
        "num_points", "views", "dropped", "quality", "masks", "scale", "error", "options",
        "downloads", "created_at", "finished_at", "expires_at",
    ]  # fmt: skip
    assert list(status["photos"][0]) == ["name", "width", "height", "mask", "thumbnail"]
    json.dumps(status)


def test_the_engine_is_built_from_settings_at_start_up(tmp_path, monkeypatch):
    import aetherscan.server.app as app_module

    built = []

    def fake_create_engine(name, **options):
        built.append((name, options))
        return ScriptedEngine(name="built")

    monkeypatch.setattr(app_module, "create_engine", fake_create_engine)
    settings = make_settings(tmp_path, engine="colmap", colmap_max_image_px=320)
    with RunningServer(settings, engine=None) as server:
        assert server.http.get("/api/info").json()["engine"] == "built"
    assert built == [
        (
            "colmap",
            {
                "weights": settings.weights,
                "device": "auto",
                "dtype": "auto",
                "image_size": 512,
                "min_confidence": 1.0,
                "max_points_per_view": 10_000,
                "refine_poses": False,
                "colmap_max_image_px": 320,
                "colmap_threads": -1,
            },
        )
    ]
