"""Previews (feature ``preview``): provisional cameras and sparse points while a job runs, sent
only to clients that asked; each replaces the one before, so a reader that is behind, or one that
attaches later, gets only the newest; none of it counts as the result's points."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest
from server_kit import RunningServer, make_settings, photo_bytes

from aetherscan.engines.base import Observer, Photo, Preview, PreviewCamera
from aetherscan.reconstruction import PointCloud, Reconstruction, View

PHOTOS = {f"p{i}.jpg": photo_bytes((40 * i, 90, 200)) for i in range(3)}
POINTS = 50  # of the result, per view
PREVIEW_POINTS = 7  # per camera placed


class PreviewingEngine:
    """TEST DOUBLE of the Engine protocol: a preview after each photo it 'places' (cameras so
    far, PREVIEW_POINTS points each), then waits at the gate, then streams the result."""

    name = "previewing"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.previews_sent = threading.Event()

    def reconstruct(self, photos: Sequence[Photo], observer: Observer) -> Reconstruction:
        views = [self._view(i, photo) for i, photo in enumerate(photos)]
        for placed in range(1, len(views) + 1):
            cameras = [
                PreviewCamera(v.name, v.width, v.height, v.K, v.cam_from_world)
                for v in views[:placed]
            ]
            n = PREVIEW_POINTS * placed
            cloud = PointCloud(
                np.full((n, 3), placed, np.float32),
                np.full((n, 3), 10 * placed, np.uint8),
                np.ones(n, np.float32),
                np.full(n, -1, np.int32),
            )
            observer.preview(Preview(cameras, cloud, f"look {placed}"))
            observer.progress("mapping", placed / len(views) / 2, f"placed {placed}")
        self.previews_sent.set()
        while not self.gate.wait(0.02):
            observer.progress("mapping", 0.5, "waiting at the gate")
        for index, view in enumerate(views):
            observer.points(
                PointCloud(
                    view.points, view.colors, view.confidence, np.full(POINTS, index, np.int32)
                )
            )
        return Reconstruction(engine=self.name, views=views)

    @staticmethod
    def _view(index: int, photo: Photo) -> View:
        K = np.array([[64.0, 0, 32], [0, 64, 24], [0, 0, 1]])
        pose = np.eye(4)
        pose[0, 3] = -index
        points = np.random.default_rng(index).normal(size=(POINTS, 3)).astype(np.float32)
        colors = np.full((POINTS, 3), 200, np.uint8)
        return View(photo.name, 64, 48, K, pose, points, colors, np.ones(POINTS, np.float32))


@pytest.fixture
def engine():
    engine = PreviewingEngine()
    yield engine
    engine.gate.set()


@pytest.fixture
def server(tmp_path, engine):
    with RunningServer(make_settings(tmp_path / "data"), engine) as running:
        yield running


def run_job(client, engine) -> list:
    client.upload(PHOTOS)
    client.send({"type": "upload_complete", "count": len(PHOTOS)})
    assert engine.previews_sent.wait(15)
    engine.gate.set()
    return client.receive_until("reconstruction_complete")


def of_type(messages: list, kind: str) -> list[dict]:
    return [m for m in messages if isinstance(m, dict) and m["type"] == kind]


def test_previews_come_before_the_points_and_are_not_counted(server, engine):
    with server.connect() as client:
        client.send({"type": "hello", "features": ["progress", "cameras", "preview"]})
        assert "preview" in client.receive()["features"]
        messages = run_job(client, engine)
    previews = of_type(messages, "preview")
    assert previews, "no preview arrived"
    first_points = next(i for i, m in enumerate(messages) if m["type"] == "points")
    assert all(messages.index(p) < first_points for p in previews)
    newest = previews[-1]
    assert newest["message"] == f"look {len(PHOTOS)}"  # a reader that kept up gets the last
    assert [c["name"] for c in newest["cameras"]] == list(PHOTOS)
    assert newest["cameras"][1]["cam_from_world"][0][3] == -1.0
    positions, colors = newest["points"]["positions"], newest["points"]["colors"]
    assert len(positions) == len(colors) == 3 * PREVIEW_POINTS * len(PHOTOS)
    assert set(positions) == {float(len(PHOTOS))} and set(colors) == {10 * len(PHOTOS)}
    sent = sum(len(m["data"]) for m in of_type(messages, "points"))
    assert sent == POINTS * len(PHOTOS)
    assert of_type(messages, "reconstruction_complete")[0]["total_points"] == sent


@pytest.mark.parametrize("features", [None, ["progress", "cameras"]])
def test_clients_that_did_not_ask_get_no_preview(server, engine, features):
    with server.connect() as client:
        if features is not None:
            client.send({"type": "hello", "features": features})
            assert "preview" not in client.receive()["features"]
        messages = run_job(client, engine)
    assert not of_type(messages, "preview")
    kinds = {m["type"] for m in messages if isinstance(m, dict)}
    contract = {"image_received", "points", "reconstruction_complete"}
    assert kinds <= (contract if features is None else contract | {"progress", "queued", "cameras"})


def test_a_client_that_attaches_later_gets_only_the_newest_preview(server, engine):
    features = ["attach", "progress", "cameras", "preview"]
    first = server.connect()
    first.send({"type": "hello", "features": features})
    first.receive()
    job_id = first.upload(PHOTOS)[0]["job_id"]
    first.send({"type": "upload_complete", "count": len(PHOTOS)})
    assert engine.previews_sent.wait(15)
    first.close()
    with server.connect() as second:
        second.send({"type": "hello", "features": features})
        second.receive()
        second.send({"type": "attach", "job_id": job_id})
        assert second.receive()["type"] == "attached"
        engine.gate.set()
        messages = second.receive_until("reconstruction_complete")
    previews = of_type(messages, "preview")
    assert [p["message"] for p in previews] == [f"look {len(PHOTOS)}"]
