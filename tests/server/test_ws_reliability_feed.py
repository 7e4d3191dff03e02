"""A client that reads slower than its job streams costs the server a bounded amount: the job's
events are kept once, in its feed, and a run of progress of one stage collapses to the latest,
so what waits for a reader is at most about two events per batch of points, whatever the engine
says meanwhile. The reader still gets every point, and the latest progress."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import numpy as np
from server_kit import RawWebSocket, RunningServer, data_url, make_settings, photo_bytes

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import PointCloud, Reconstruction, View

VIEWS, POINTS, CHATTER = 4, 5000, 3000  # progress calls between two batches of points


class ChattyEngine:
    """TEST DOUBLE of the Engine protocol: for each photo CHATTER progress calls, then its
    points; then it waits at the gate, still talking."""

    name = "chatty"

    def __init__(self) -> None:
        self.gate = threading.Event()

    def reconstruct(self, photos: Sequence[Photo], observer: Observer) -> Reconstruction:
        views = []
        for index, photo in enumerate(photos):
            for step in range(CHATTER):
                observer.progress("mapping", (index + step / CHATTER) / len(photos), f"{step}")
            rng = np.random.default_rng(index)
            xyz = rng.normal(size=(POINTS, 3)).astype(np.float32)
            rgb = np.full((POINTS, 3), 40 * index, np.uint8)
            confidence = np.ones(POINTS, np.float32)
            observer.points(PointCloud(xyz, rgb, confidence, np.full(POINTS, index, np.int32)))
            K, pose = np.eye(3), np.eye(4)
            views.append(View(photo.name, 64, 48, K, pose, xyz, rgb, confidence))
        while not self.gate.wait(0.01):
            observer.progress("densify", 0.5, "waiting at the gate")
        observer.progress("done", 1.0, "")
        return Reconstruction(engine=self.name, views=views)


def held_events(server: RunningServer, job_id: str) -> int:
    """Events the server holds for the job's readers: in the job's own listener queues and,
    where there is one, in its feed."""
    app = server._server.config.app
    job = app.state.service.jobs.get_open(job_id)
    queued = sum(queue.qsize() for queue in job.listeners)
    sessions = getattr(app.state, "ws_sessions", None)
    feed = sessions.feed_of(job_id) if sessions is not None else None
    return queued + (len(feed.events) if feed is not None else 0)


def read_messages(raw: RawWebSocket, until: str) -> list[dict]:
    """The server's JSON messages on a raw socket, up to and including one of type ``until``."""
    frames = raw.receive_frames(lambda _, payload: json.loads(payload)["type"] == until, 1 << 20)
    return [json.loads(payload) for _, payload in frames]


def test_a_slow_reader_costs_a_bounded_backlog_and_gets_every_point(tmp_path):
    engine = ChattyEngine()
    settings = make_settings(tmp_path / "data", idle_timeout_s=120)
    with RunningServer(settings, engine) as server:
        raw = RawWebSocket(server.port, receive_buffer=4096)  # reads nothing for now
        raw.send({"type": "hello", "features": ["progress", "job"]})
        for index in range(VIEWS):
            photo = data_url(photo_bytes((40 * index, 0, 0)))
            raw.send({"type": "image_data", "data": photo, "filename": f"{index}.jpg"})
        raw.send({"type": "upload_complete", "count": VIEWS})
        deadline = time.monotonic() + 60
        while (job_id := only_job(server)) is None or stage(server, job_id) != "densify":
            assert time.monotonic() < deadline, "the engine did not reach the gate"
            time.sleep(0.05)
        held = held_events(server, job_id)
        assert held <= 2 * VIEWS + 4, f"{held} events held for one slow reader"
        engine.gate.set()
        raw.socket.settimeout(60)
        messages = read_messages(raw, "reconstruction_complete")
        raw.close()
    points = [p for m in messages if m["type"] == "points" for p in m["data"]]
    assert len(points) == VIEWS * POINTS == messages[-1]["total_points"]
    progress = [m for m in messages if m["type"] == "progress"]
    assert len(progress) < 3 * VIEWS + 20, "runs of progress collapsed"
    mapping = [m for m in progress if m["stage"] == "mapping"]
    assert mapping[-1]["message"] == str(CHATTER - 1), "the latest of each run"
    assert progress[-1]["stage"] == "done"


def only_job(server: RunningServer) -> str | None:
    folders = list((server.settings.data_dir / "jobs").iterdir())
    return folders[0].name if folders else None


def stage(server: RunningServer, job_id: str) -> str:
    return server.http.get(f"/api/jobs/{job_id}").json()["stage"]
