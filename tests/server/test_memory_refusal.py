"""The server refuses a Fast3R job that its device cannot hold when the job is submitted, with
the memory plan's sentence, over REST and the WebSocket; the photos of a WebSocket session stay."""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

import aetherscan.models.memory as memory
from aetherscan.engines.fast3r import Fast3REngine

PHOTOS = {
    "a.jpg": photo_bytes((200, 30, 30), (640, 480)),
    "b.jpg": photo_bytes((30, 200, 30), (640, 480)),
}
FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]


@pytest.fixture(scope="module")
def engine(fast3r_reference, tmp_path_factory) -> Fast3REngine:
    folder = tmp_path_factory.mktemp("tiny_fast3r")
    shutil.copy(fast3r_reference / "tiny_config.json", folder / "config.json")
    shutil.copy(fast3r_reference / "tiny_model.safetensors", folder / "model.safetensors")
    return Fast3REngine(folder, device="cpu", image_size=224, min_view_confidence=1.0)


@pytest.fixture
def little_memory(engine, monkeypatch):
    """Half of what a job of two photos needs."""
    needed = engine.plan_photos([(640, 480)] * 2).required_bytes
    monkeypatch.setattr(memory, "available_memory", lambda *_: (needed // 2, "a test"))


def test_rest_refuses_a_job_too_big_for_the_device(engine, little_memory, tmp_path):
    with RunningServer(make_settings(tmp_path), engine) as server:
        answer = server.http.post("/api/jobs", files=FILES)
        assert answer.status_code == 413
        detail = answer.json()["detail"]
        assert detail.startswith("Fast3R cannot run 2 views of 224x224 in fp32 on cpu")
        assert "fit at this size" in detail


def test_websocket_refuses_it_and_keeps_the_photos(engine, little_memory, tmp_path, monkeypatch):
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["progress"]})
        client.receive()
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        error = client.receive()
        assert error["type"] == "error" and error["code"] == "limit"
        assert error["message"].startswith("Fast3R cannot run 2 views")
        monkeypatch.setattr(memory, "available_memory", lambda *_: (2**40, "a test"))
        client.send({"type": "upload_complete", "count": 2})  # the same photos, now they fit
        kinds = [m["type"] for m in client.receive_until("reconstruction_complete", 60)]
        assert "progress" in kinds


@dataclass
class PlanningEngine(ScriptedEngine):
    """TEST DOUBLE: ScriptedEngine with Fast3R's memory plan (the tiny model's)."""

    planner: Fast3REngine | None = None

    def plan_photos(self, sizes, *, freed_bytes=0):
        return self.planner.plan_photos(sizes, freed_bytes=freed_bytes)


def test_while_a_job_runs_the_next_one_counts_its_memory_as_free(engine, tmp_path, monkeypatch):
    """A job that fits once the running job is done is queued, not refused; one that would
    not fit even then is refused."""
    gate = threading.Event()
    planning = PlanningEngine(gate=gate, planner=engine)
    needed = engine.plan_photos([(640, 480)] * 2).required_bytes
    with RunningServer(make_settings(tmp_path, max_jobs_per_client=4), planning) as server:
        first = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        server.wait_for_state(first, ("running",))
        # The running job holds its memory: alone, the next would not fit now.
        monkeypatch.setattr(memory, "available_memory", lambda *_: (int(needed * 0.6), "a test"))
        second = server.http.post("/api/jobs", files=FILES)
        assert second.status_code == 201, second.text
        assert second.json()["state"] == "queued"
        many = [("files", (f"{k}.jpg", PHOTOS["a.jpg"], "image/jpeg")) for k in range(40)]
        refused = server.http.post("/api/jobs", files=many)
        assert refused.status_code == 413
        assert refused.json()["detail"].startswith("Fast3R cannot run 40 views")
        gate.set()
        assert server.wait_for_state(second.json()["job_id"])["state"] == "done"
