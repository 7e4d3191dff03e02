"""Job options (``refine_poses``): chosen per job over REST (a form field) and the WebSocket
(feature ``options``, ``upload_complete.options``), kept with the job, handed to the engine as
keyword arguments; refused with a sentence where the engine does not take them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from queue_kit import cluster
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import Reconstruction

PHOTOS = {"a.jpg": photo_bytes((200, 30, 30)), "b.jpg": photo_bytes((30, 200, 30))}
FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]


@dataclass
class RefiningEngine(ScriptedEngine):
    """TEST DOUBLE: ScriptedEngine that takes the job option refine_poses and records it."""

    name: str = "refining"
    given: list[bool | None] = field(default_factory=list)

    def reconstruct(
        self,
        photos: Sequence[Photo],
        observer: Observer | None = None,
        *,
        refine_poses: bool | None = None,
    ) -> Reconstruction:
        self.given.append(refine_poses)
        return super().reconstruct(photos, observer)


@pytest.fixture
def refining(tmp_path):
    engine = RefiningEngine()
    with RunningServer(make_settings(tmp_path), engine) as server:
        yield server, engine


def test_rest_jobs_choose_refine_poses_and_show_it(refining):
    server, engine = refining
    http = server.http
    assert http.get("/api/info").json()["job_options"] == ["refine_poses"]
    chosen = http.post("/api/jobs", files=FILES, data={"refine_poses": "true"}).json()
    plain = http.post("/api/jobs", files=FILES).json()
    for job in (chosen, plain):
        assert server.wait_for_state(job["job_id"])["state"] == "done"
    assert engine.given == [True, None]  # None: the engine's own default
    assert http.get(f"/api/jobs/{chosen['job_id']}").json()["options"] == {"refine_poses": True}
    assert http.get(f"/api/jobs/{plain['job_id']}").json()["options"] == {}


def test_rest_refuses_a_value_that_is_not_true_or_false(refining):
    server, engine = refining
    answer = server.http.post("/api/jobs", files=FILES, data={"refine_poses": "maybe"})
    assert answer.status_code == 422
    assert "refine_poses" in answer.json()["detail"]
    assert engine.given == []


def test_an_engine_without_the_option_refuses_the_job_with_a_sentence(server, engine):
    """ScriptedEngine takes no job option: the request is refused, and leaves no job behind to
    count against the client (two more go through, its limit)."""
    assert server.http.get("/api/info").json()["job_options"] == []
    for _ in range(3):
        answer = server.http.post("/api/jobs", files=FILES, data={"refine_poses": "true"})
        assert answer.status_code == 400
        assert answer.json()["detail"] == (
            "the scripted engine has no job option 'refine_poses'; leave it out"
        )
    jobs = [server.http.post("/api/jobs", files=FILES).json() for _ in range(2)]
    for job in jobs:
        assert server.wait_for_state(job["job_id"])["state"] == "done"
    assert len(engine.calls) == 2


def test_websocket_jobs_choose_options_after_hello(refining):
    server, engine = refining
    with server.connect() as client:
        client.send({"type": "hello", "features": ["options"]})
        welcome = client.receive()
        assert welcome["features"] == ["options"] and welcome["job_options"] == ["refine_poses"]
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2, "options": {"refine": True}})
        error = client.receive()
        assert error["code"] == "upload"
        assert error["message"] == (
            "unknown job option 'refine'; the options are refine_poses; the photos are kept: "
            "send upload_complete again"
        )
        client.send({"type": "upload_complete", "count": 2, "options": {"refine_poses": True}})
        client.receive_until("reconstruction_complete")
    assert engine.given == [True]


def test_without_the_feature_options_are_ignored_like_any_unknown_field(refining):
    server, engine = refining
    with server.connect() as client:
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2, "options": {"refine_poses": True}})
        client.receive_until("reconstruction_complete")
    assert engine.given == [None]


def test_a_wrongly_typed_option_is_a_bad_message(refining):
    server, _ = refining
    with server.connect() as client:
        client.send({"type": "hello", "features": ["options"]})
        client.receive()
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2, "options": {"refine_poses": "yes"}})
        error = client.receive()
        assert error["code"] == "bad_message"
        assert 'field "options.refine_poses" should be a valid boolean' in error["message"]


@pytest.mark.slow
def test_the_option_travels_to_a_queue_worker(tmp_path):
    with cluster(tmp_path, {"AETHERSCAN_ENGINE": "queue_engines:refining"}) as running:
        http = running.start("a")
        job = http.post("/api/jobs", files=FILES, data={"refine_poses": "false"}).json()
        status = running.wait_for(job["job_id"], ("done", "failed"))
        assert status["state"] == "done", status
        assert status["options"] == {"refine_poses": False}
        assert status["quality"]["reasons"] == ["refine_poses=False"]
