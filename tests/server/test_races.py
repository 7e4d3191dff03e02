"""Requests that meet on one job, through the real server: a delete while the engine still reads
the photos (answered at once; the files go when the engine has stopped), first downloads of
exports of different jobs or formats (none waits for another), and the points of a finished job
(made once, then served from a file)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes
from test_rest_faults import no_path_in_errors  # noqa: F401 (a fixture)

from aetherscan.engines.base import Observer
from aetherscan.server import results as results_module
from aetherscan.server.protocol import encode_points
from aetherscan.server.routes import STOPPING

pytestmark = pytest.mark.usefixtures("no_path_in_errors")

PHOTOS = {f"p{i}.jpg": photo_bytes((60 * i, 200 - 60 * i, 90)) for i in range(3)}
FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]


@dataclass
class ReadingEngine(ScriptedEngine):
    """TEST DOUBLE: waits at ``gate`` without calling the observer (as an engine does inside a
    long step), then reads every photo before reconstructing; what it read, or the error it
    met, is kept in ``read``."""

    started: threading.Event = field(default_factory=threading.Event)
    read: list[bytes] | OSError | None = None

    def reconstruct(self, photos, observer: Observer | None = None):
        assert self.gate is not None
        (observer or Observer()).progress("load", 0.0, "reading")
        self.started.set()
        self.gate.wait(20)
        try:
            self.read = [photo.path.read_bytes() for photo in photos]
        except OSError as exc:
            self.read = exc
        gate, self.gate = self.gate, None
        try:
            return super().reconstruct(photos, observer)
        finally:
            self.gate = gate


def test_deleting_a_running_job_waits_for_the_engine_to_stop_reading(tmp_path):
    """Before: the delete removed the photos while the engine read them."""
    engine = ReadingEngine(points_per_view=50, gate=threading.Event())
    with RunningServer(make_settings(tmp_path / "data"), engine) as server:
        job_id = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert engine.started.wait(20)
        started = time.monotonic()
        reply = server.http.delete(f"/api/jobs/{job_id}")
        assert time.monotonic() - started < 2  # answered at once, not when the job stops
        assert (reply.status_code, reply.json()) == (202, {"detail": STOPPING})
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        assert server.http.delete(f"/api/jobs/{job_id}").status_code == 404
        folder = server.settings.data_dir / "jobs" / job_id
        assert sorted(p.name for p in (folder / "photos").iterdir()) == [
            "0000.jpg",
            "0001.jpg",
            "0002.jpg",
        ]
        engine.gate.set()
        for _ in range(500):
            if engine.read is not None and not folder.exists():
                break
            time.sleep(0.02)
        assert engine.read == list(PHOTOS.values())
        assert not folder.exists()
        # The worker is free for the next job.
        engine.started.clear()
        second = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert server.wait_for_state(second)["state"] == "done"


def test_deleting_a_queued_or_finished_job_removes_it_at_once(tmp_path):
    engine = ReadingEngine(points_per_view=50, gate=threading.Event())
    with RunningServer(make_settings(tmp_path / "data"), engine) as server:
        running = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert engine.started.wait(20)
        queued = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert server.http.delete(f"/api/jobs/{queued}").status_code == 204
        assert not (server.settings.data_dir / "jobs" / queued).exists()
        engine.gate.set()
        assert server.wait_for_state(running)["state"] == "done"
        assert server.http.delete(f"/api/jobs/{running}").status_code == 204
        assert not (server.settings.data_dir / "jobs" / running).exists()


@pytest.fixture
def held_export(monkeypatch):
    """Exports of the job whose id is put in ``held["job"]`` wait for ``held["go"]``."""
    held = {"job": None, "waiting": threading.Event(), "go": threading.Event(), "calls": []}
    real = results_module.export

    def export(reconstruction, fmt, path, **options):
        held["calls"].append((fmt, str(path)))
        if held["job"] is not None and held["job"] in str(path) and fmt == "glb":
            held["waiting"].set()
            assert held["go"].wait(20)
        return real(reconstruction, fmt, path, **options)

    monkeypatch.setattr(results_module, "export", export)
    yield held
    held["go"].set()


def test_a_first_export_never_waits_for_another_jobs_or_formats(tmp_path, held_export):
    """Before: one lock for the whole process made every first export wait behind any other."""
    with RunningServer(
        make_settings(tmp_path / "data"), ScriptedEngine(points_per_view=50)
    ) as server:
        slow, other = (server.http.post("/api/jobs", files=FILES).json()["job_id"] for _ in "ab")
        for job_id in (slow, other):
            assert server.wait_for_state(job_id)["state"] == "done"
        held_export["job"] = slow
        replies: list[httpx.Response] = []
        waiting = [
            threading.Thread(
                target=lambda: replies.append(server.http.get(f"/api/jobs/{slow}/files/scene.glb"))
            )
            for _ in range(2)
        ]
        for thread in waiting:
            thread.start()
        assert held_export["waiting"].wait(20)
        quick = httpx.Client(base_url=str(server.http.base_url), timeout=5)
        with quick:
            assert quick.get(f"/api/jobs/{other}/files/scene.glb").status_code == 200
            assert quick.get(f"/api/jobs/{slow}/files/colmap_text.zip").status_code == 200
        held_export["go"].set()
        for thread in waiting:
            thread.join(20)
        assert [reply.status_code for reply in replies] == [200, 200]
        assert replies[0].content == replies[1].content
        made = [path for fmt, path in held_export["calls"] if fmt == "glb" and slow in path]
        assert len(made) == 1  # two downloads at once made it once
    assert results_module._locks == {}  # no lock kept for files already made


def test_points_are_made_once_then_served_from_a_file(tmp_path, monkeypatch):
    """Before: every request loaded the reconstruction and encoded the whole cloud again."""
    loads = []
    real = results_module.load_reconstruction

    def load(path):
        loads.append(path)
        return real(path)

    monkeypatch.setattr(results_module, "load_reconstruction", load)
    with RunningServer(
        make_settings(tmp_path / "data"), ScriptedEngine(points_per_view=500)
    ) as server:
        job_id = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert server.wait_for_state(job_id)["state"] == "done"
        bodies = [server.http.get(f"/api/jobs/{job_id}/points").content for _ in range(3)]
        result = server.settings.data_dir / "jobs" / job_id / "result"
        frames, count = encode_points(real(result / "reconstruction.npz").point_cloud(), True)
    assert count == 1500
    assert bodies == [b"".join(frames)] * 3
    assert len(loads) == 1
    assert (result / "points.bin").read_bytes() == bodies[0]
