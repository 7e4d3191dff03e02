"""What the data folder holds after each way a job ends, listed file by file: after success the
photos (kept for the exports that include them) and the results; after failure, cancellation
(uploading, queued, running), a disconnect (mid-upload, mid-reconstruction) or a refusal, only
the job's record. No partial file (``.part``, ``.making-*``) is ever left."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

PHOTOS = {"a.jpg": photo_bytes((200, 0, 0)), "b.jpg": photo_bytes((0, 200, 0))}
RESULTS = ["cameras.json", "formats.txt", "reconstruction.npz", "scene.ply"]
REST_FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]


def listing(data_dir: Path) -> list[str]:
    """Every file and folder under jobs/, relative, with <id> for the job's id."""
    entries = []
    for path in sorted((data_dir / "jobs").rglob("*")):
        parts = path.relative_to(data_dir / "jobs").parts
        entries.append("/".join(["<id>", *parts[1:]]) + ("/" if path.is_dir() else ""))
    return entries


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()


@pytest.fixture
def server(tmp_path, gate):
    engine = ScriptedEngine(points_per_view=200, gate=gate)
    with RunningServer(make_settings(tmp_path / "data"), engine) as running:
        yield running
        gate.set()


def settled(server, job_id: str, state: str) -> None:
    assert server.wait_for_state(job_id)["state"] == state
    assert (server.settings.data_dir / "index.sqlite3").exists()


def wait_running(server, job_id: str) -> None:
    server.wait_for_state(job_id, states=("running",))


def test_after_success_photos_and_results_only(server, gate):
    gate.set()
    job_id = server.http.post("/api/jobs", files=REST_FILES).json()["job_id"]
    settled(server, job_id, "done")
    assert listing(server.settings.data_dir) == [
        "<id>/",
        "<id>/photos/",
        "<id>/photos/0000.jpg",
        "<id>/photos/0001.jpg",
        "<id>/result/",
        *[f"<id>/result/{name}" for name in RESULTS],
    ]
    # An export made on download is moved in whole; its scratch folder is gone.
    assert server.http.get(f"/api/jobs/{job_id}/files/scene.glb").status_code == 200
    assert listing(server.settings.data_dir)[-5:] == [
        f"<id>/result/{name}" for name in sorted([*RESULTS, "scene.glb"])
    ]


def test_after_failure_only_the_record(server, gate):
    gate.set()
    files = [("files", ("a.jpg", PHOTOS["a.jpg"], "image/jpeg"))] * 2
    files.append(("files", ("fail.jpg", PHOTOS["b.jpg"], "image/jpeg")))
    job_id = server.http.post("/api/jobs", files=files).json()["job_id"]
    settled(server, job_id, "failed")
    assert listing(server.settings.data_dir) == ["<id>/"]


def test_after_a_refused_upload_nothing(server):
    files = [*REST_FILES, ("files", ("bad.jpg", b"not a photo", "image/jpeg"))]
    assert server.http.post("/api/jobs", files=files).status_code == 400
    assert listing(server.settings.data_dir) == []


def test_after_cancelling_a_running_job(server):
    with server.connect() as client:
        client.send({"type": "hello", "features": ["job", "progress"]})
        client.receive()
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        job_id = client.receive()["job_id"]
        client.receive_until("points")  # running, held at the gate
        client.send({"type": "cancel"})
        client.receive_until("cancelled")
    settled(server, job_id, "cancelled")
    assert listing(server.settings.data_dir) == ["<id>/"]


def test_after_cancelling_a_queued_job_over_rest(server):
    running = server.http.post("/api/jobs", files=REST_FILES).json()["job_id"]
    wait_running(server, running)
    queued = server.http.post("/api/jobs", files=REST_FILES).json()["job_id"]
    assert server.http.delete(f"/api/jobs/{queued}").status_code == 204
    assert server.http.delete(f"/api/jobs/{running}").status_code == 202  # running
    for job_id in (queued, running):
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
    server.engine.gate.set()  # the running one stops at the engine's next call
    jobs = server.settings.data_dir / "jobs"
    for _ in range(500):
        if not any(jobs.iterdir()):
            break
        threading.Event().wait(0.02)
    assert listing(server.settings.data_dir) == []


def test_after_cancelling_an_upload(server):
    with server.connect() as client:
        client.send({"type": "hello", "features": []})
        client.receive()
        client.upload(PHOTOS)
        client.send({"type": "cancel"})
        assert client.receive()["type"] == "cancelled"
    assert listing(server.settings.data_dir) == ["<id>/"]


def test_after_a_disconnect_mid_upload(server):
    with server.connect() as client:
        client.upload({"a.jpg": PHOTOS["a.jpg"]})
    (folder,) = (server.settings.data_dir / "jobs").iterdir()
    settled(server, folder.name, "cancelled")
    assert listing(server.settings.data_dir) == ["<id>/"]


def test_after_a_disconnect_mid_reconstruction(server):
    with server.connect() as client:
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        client.receive_until("points")
    (folder,) = (server.settings.data_dir / "jobs").iterdir()
    settled(server, folder.name, "cancelled")
    assert listing(server.settings.data_dir) == ["<id>/"]
