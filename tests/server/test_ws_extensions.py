"""The protocol's extensions, which a client opts into with hello: welcome, progress, queued,
cameras, job id and downloads, binary point frames, cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.reconstruction import load_reconstruction
from aetherscan.server.protocol import FEATURES, decode_point_frame

ALL = {"type": "hello", "protocol": 1, "features": list(FEATURES)}


def test_hello_gets_welcome_with_engine_features_and_limits(server):
    with server.connect() as client:
        client.send({"type": "hello", "protocol": 1, "features": ["progress", "teleport"]})
        welcome = client.receive()
    assert welcome["type"] == "welcome" and welcome["engine"] == "scripted"
    assert welcome["features"] == ["progress"], "unknown features are ignored"
    assert welcome["limits"]["max_photos_per_job"] == server.settings.max_photos_per_job
    assert welcome["max_points_per_message"] == 5000


def test_a_newer_protocol_version_is_answered_and_the_session_goes_on(server):
    with server.connect() as client:
        client.send({"type": "hello", "protocol": 7, "features": []})
        error, welcome = client.receive(), client.receive()
        assert "protocol version 7 is not supported" in error["message"]
        assert welcome["protocol"] == 1


def test_all_features_binary_frames_cameras_progress_and_downloads(server, engine, three_photos):
    with server.connect() as client:
        client.send(ALL)
        client.receive()
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        messages = client.receive_until("reconstruction_complete")

    kinds = [m if isinstance(m, bytes) else m["type"] for m in messages]
    json_kinds = [k for k in kinds if isinstance(k, str)]
    assert json_kinds[0] == "queued" and "points" not in json_kinds
    assert "progress" in json_kinds and json_kinds[-2:] == ["cameras", "reconstruction_complete"]
    frames = [decode_point_frame(m) for m in messages if isinstance(m, bytes)]
    assert sorted({f.view_index for f in frames}) == [0, 1, 2]
    complete = messages[-1]
    assert complete["total_points"] == sum(len(f.xyz) for f in frames) == 3 * engine.points_per_view

    progress = [m for m in messages if isinstance(m, dict) and m["type"] == "progress"]
    assert all(0 <= m["fraction"] <= 1 and m["stage"] for m in progress)
    cameras = messages[-2]["cameras"]
    assert [c["name"] for c in cameras] == list(three_photos)
    assert cameras[1]["width"] == 64 and np.shape(cameras[1]["cam_from_world"]) == (4, 4)
    assert np.asarray(cameras[1]["K"])[0, 0] == 64

    job_id = complete["job_id"]
    assert complete["downloads"]["ply"] == f"/api/jobs/{job_id}/files/scene.ply"
    status = server.http.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "done" and status["num_points"] == complete["total_points"]
    ply = server.http.get(complete["downloads"]["ply"])
    assert ply.status_code == 200 and ply.content.startswith(b"ply\n")


def test_frames_match_the_engine_points(tmp_path, three_photos):
    engine = ScriptedEngine(points_per_view=500)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["binary_points", "job"]})
        client.receive()
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        messages = client.receive_until("reconstruction_complete")
        job_id = messages[-1]["job_id"]
        result = load_reconstruction(
            server.settings.data_dir / "jobs" / job_id / "result" / "reconstruction.npz"
        )
    for frame in (decode_point_frame(m) for m in messages if isinstance(m, bytes)):
        view = result.views[frame.view_index]
        order = np.argsort(-view.confidence)  # distinct confidences: one order
        step = (view.points.max(0) - view.points.min(0)) / 65535
        assert np.all(np.abs(frame.xyz - view.points[order]) <= step * 0.5 + 1e-5)
        assert np.all(np.abs(frame.rgb.astype(int) - view.colors[order]) <= 7)
        assert np.all(np.diff(frame.confidence_table) <= 0)


def test_queued_jobs_learn_their_position(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with (
        RunningServer(make_settings(tmp_path), engine) as server,
        server.connect() as first,
        server.connect() as second,
    ):
        for client in (first, second):
            client.send({"type": "hello", "features": ["progress"]})
            client.receive()
            client.upload(three_photos)
        first.send({"type": "upload_complete", "count": 3})
        assert first.receive() == {"type": "queued", "position": 0}
        assert first.receive_until("points")  # running now, held at the gate
        second.send({"type": "upload_complete", "count": 3})
        assert second.receive() == {"type": "queued", "position": 1}
        gate.set()
        first.receive_until("reconstruction_complete")
        started = second.receive()
        assert started == {
            "type": "progress",
            "stage": "load",
            "fraction": 0.0,
            "message": "the reconstruction started",
        }
        assert second.receive_until("reconstruction_complete")[-1]["total_points"] > 0


def test_cancel_stops_a_running_job_and_removes_its_files(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["job", "progress"]})
        client.receive()
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        job_id = client.receive()["job_id"]
        client.receive_until("points")
        client.send({"type": "cancel"})
        cancelled = client.receive_until("cancelled")[-1]
        assert cancelled["message"] == "cancelled by the client"
        status = server.http.get(f"/api/jobs/{job_id}").json()
        assert status["state"] == "cancelled" and status["error"] == "cancelled by the client"
        assert not (server.settings.data_dir / "jobs" / job_id / "photos").exists()
        # The session goes on and can start again.
        gate.set()
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0


def test_cancel_during_upload_discards_the_photos(server, three_photos):
    with server.connect() as client:
        client.send({"type": "hello", "features": []})
        client.receive()
        client.upload(three_photos)
        client.send({"type": "cancel"})
        assert client.receive() == {
            "type": "cancelled",
            "message": "the upload was cancelled by the client and its photos removed",
        }
        client.send({"type": "upload_complete", "count": 3})
        error = client.receive()
        assert error["code"] == "upload" and "no photos were received" in error["message"]
    assert not any((server.settings.data_dir / "jobs").glob("*/photos/*"))


def test_disconnect_mid_reconstruction_cancels_the_job(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server:
        with server.connect() as client:
            client.send({"type": "hello", "features": ["job", "progress"]})
            client.receive()
            client.upload(three_photos)
            client.send({"type": "upload_complete", "count": 3})
            job_id = client.receive()["job_id"]
            client.receive_until("points")
        status = server.wait_for_state(job_id)
        assert status["state"] == "cancelled" and status["error"] == "the client disconnected"
        assert not (server.settings.data_dir / "jobs" / job_id / "photos").exists()
        assert not (server.settings.data_dir / "jobs" / job_id / "result").exists()
        # The worker is free for the next job.
        gate.set()
        with server.connect() as client:
            client.upload(three_photos)
            client.send({"type": "upload_complete", "count": 3})
            assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0


def test_disconnect_mid_upload_leaves_no_photos(server, three_photos):
    with server.connect() as client:
        client.upload(three_photos)
    jobs = server.settings.data_dir / "jobs"
    for _ in range(100):  # the server notices the disconnect a moment later
        if not any(jobs.glob("*/photos/*")):
            break
        time.sleep(0.02)
    assert not any(jobs.glob("*/photos/*"))


def test_error_codes_are_sent_only_after_hello(server):
    with server.connect() as old, server.connect() as new:
        new.send({"type": "hello", "features": []})
        new.receive()
        for client in (old, new):
            client.send({"type": "upload_complete", "count": 2})
        assert list(old.receive()) == ["type", "message"]
        assert new.receive()["code"] == "upload"


def test_a_job_deleted_over_rest_ends_the_session_job(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["job", "progress"]})
        client.receive()
        client.upload({"a.jpg": photo_bytes(), "b.jpg": photo_bytes()})
        client.send({"type": "upload_complete", "count": 2})
        job_id = client.receive()["job_id"]
        client.receive_until("points")
        assert server.http.delete(f"/api/jobs/{job_id}").status_code == 202  # running
        assert client.receive_until("cancelled")[-1]["message"] == "the job was deleted"
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        gate.set()
    assert not (server.settings.data_dir / "jobs" / job_id).exists()


def test_dropped_photos_are_named_with_their_reason(server):
    photos = {"a.jpg": photo_bytes(), "drop.jpg": photo_bytes(), "b.jpg": photo_bytes()}
    with server.connect() as client:
        client.send({"type": "hello", "features": ["cameras", "job"]})
        client.receive()
        client.upload(photos)
        client.send({"type": "upload_complete", "count": 3})
        *_, cameras, complete = client.receive_until("reconstruction_complete")
    assert [c["name"] for c in cameras["cameras"]] == ["a.jpg", "b.jpg"]
    dropped = [{"name": "drop.jpg", "reason": "it was scripted to be dropped"}]
    assert cameras["dropped"] == dropped
    assert server.http.get(f"/api/jobs/{complete['job_id']}").json()["dropped"] == dropped
