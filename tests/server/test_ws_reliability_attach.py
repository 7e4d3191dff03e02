"""Reattaching (feature ``attach``): a client whose connection drops comes back on a new one,
sends ``attach`` with its job's id, and gets the job's whole stream from the start, then live.
Until then the job waits reattach_grace_s; only the client that made the job may attach to it;
a client without the feature keeps the contract (a drop cancels at once)."""

from __future__ import annotations

import threading
import time

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.protocol import decode_point_frame

RED, GREEN, BLUE = (
    photo_bytes((220, 20, 20)),
    photo_bytes((20, 220, 20)),
    photo_bytes((20, 20, 220)),
)
PHOTOS = {"a.jpg": RED, "b.jpg": GREEN, "c.jpg": BLUE}
FEATURES = ["attach", "progress", "cameras", "job"]
POINTS = 300


def hello(client, features=FEATURES) -> dict:
    client.send({"type": "hello", "features": features})
    return client.receive()


def attach(server, job_id: str, headers=None):
    """A new connection with the feature, attached to the job; it and the answer to attach."""
    client = server.connect(headers)
    hello(client)
    client.send({"type": "attach", "job_id": job_id})
    return client, client.receive()


def start_job(client, photos=PHOTOS) -> str | None:
    """Upload and queue; the job's id, from image_received (with the feature)."""
    replies = client.upload(photos)
    client.send({"type": "upload_complete", "count": len(photos)})
    return replies[0].get("job_id")


def wait_until(predicate, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def points_of(messages: list) -> list[dict]:
    return [p for m in messages if isinstance(m, dict) and m["type"] == "points" for p in m["data"]]


def colours(points: list[dict]) -> set[tuple[int, int, int]]:
    return {(p["r"] // 40, p["g"] // 40, p["b"] // 40) for p in points}


@pytest.fixture
def gate():
    gate = threading.Event()
    yield gate
    gate.set()


@pytest.fixture
def server(tmp_path, gate):
    engine = ScriptedEngine(points_per_view=POINTS, gate=gate)
    with RunningServer(make_settings(tmp_path / "data"), engine) as running:
        yield running


def test_a_dropped_running_job_goes_on_and_a_new_connection_gets_its_whole_stream(server, gate):
    with server.connect() as first:
        welcome = hello(first)
        assert "attach" in welcome["features"] and welcome["reattach_grace_s"] == 60
        job_id = start_job(first)
        before = first.receive_until("points")  # the job runs; the first view's points came
    time.sleep(0.5)  # the server has seen the drop
    assert server.http.get(f"/api/jobs/{job_id}").json()["state"] == "running"

    second, attached = attach(server, job_id)
    with second:
        assert attached == {
            "type": "attached",
            "job_id": job_id,
            "state": "running",
            "photos": ["a.jpg", "b.jpg", "c.jpg"],
        }
        replayed = second.receive_until("points")  # from the start: queued, load, points
        kinds = [m["type"] for m in replayed]
        assert kinds[0] == "queued" and replayed[0]["job_id"] == job_id
        load = replayed[1]
        assert (load["type"], load["stage"], load["fraction"]) == ("progress", "load", 0.0)
        assert points_of(replayed) == points_of(before)
        gate.set()
        rest = second.receive_until("reconstruction_complete")
        second.send({"type": "ping"})
        assert second.receive() == {"type": "pong"}
    messages = replayed + rest
    assert len(points_of(messages)) == 3 * POINTS == messages[-1]["total_points"]
    assert colours(points_of(messages)) == {(5, 0, 0), (0, 5, 0), (0, 0, 5)}
    assert [c["name"] for c in messages[-2]["cameras"]] == list(PHOTOS)
    assert server.http.get(f"/api/jobs/{job_id}").json()["state"] == "done"


def test_a_queued_job_waits_for_its_client_and_then_runs(server, gate):
    with server.connect() as busy:
        start_job(busy, {"x.jpg": RED, "y.jpg": RED})  # runs, held at the gate
        with server.connect() as first:
            hello(first)
            job_id = start_job(first)
            assert first.receive()["type"] == "queued"
        time.sleep(0.5)
        assert server.http.get(f"/api/jobs/{job_id}").json()["state"] == "queued"
        second, attached = attach(server, job_id)
        with second:
            assert attached["state"] == "queued"
            assert second.receive() == {"type": "queued", "position": 1, "job_id": job_id}
            gate.set()
            messages = second.receive_until("reconstruction_complete")
        assert messages[-1]["total_points"] == 3 * POINTS == len(points_of(messages))


def test_an_interrupted_upload_goes_on_after_attach(server, gate):
    gate.set()
    with server.connect() as first:
        hello(first)
        job_id = first.upload({"a.jpg": RED, "b.jpg": GREEN})[0]["job_id"]
    second, attached = attach(server, job_id)
    with second:
        assert attached["state"] == "uploading" and attached["photos"] == ["a.jpg", "b.jpg"]
        assert second.upload({"c.jpg": BLUE})[0] == {
            "type": "image_received",
            "status": "saved",
            "filename": "c.jpg",
            "job_id": job_id,
        }
        second.send({"type": "upload_complete", "count": 3})
        messages = second.receive_until("reconstruction_complete")
    assert messages[-1]["total_points"] == 3 * POINTS and messages[-1]["job_id"] == job_id


def test_a_job_that_finished_meanwhile_is_sent_from_its_stored_result(server, gate):
    gate.set()
    with server.connect() as first:
        hello(first, [*FEATURES, "binary_points", "quality"])
        job_id = start_job(first)
    status = server.wait_for_state(job_id)
    assert status["state"] == "done"
    second = server.connect()
    hello(second, [*FEATURES, "binary_points", "quality"])
    second.send({"type": "attach", "job_id": job_id})
    with second:
        assert second.receive()["state"] == "done"
        messages = second.receive_until("reconstruction_complete")
    frames = [decode_point_frame(m) for m in messages if isinstance(m, bytes)]
    assert sum(len(f.xyz) for f in frames) == status["num_points"] == 3 * POINTS
    complete = messages[-1]
    assert complete["total_points"] == 3 * POINTS and complete["job_id"] == job_id
    assert complete["downloads"] == status["downloads"] and "quality" in complete
    assert messages[-2]["type"] == "cameras"


def test_a_failed_or_cancelled_job_says_so_on_attach(server, gate):
    gate.set()
    with server.connect() as first:
        hello(first)
        failing = start_job(first, {"fail-a.jpg": RED, "fail-b.jpg": GREEN})
        first.receive_until("error")
        cancelled = first.upload({"a.jpg": RED})[0]["job_id"]
        first.send({"type": "cancel"})
        first.receive_until("cancelled")
    second, attached = attach(server, failing)
    with second:
        assert attached["state"] == "failed"
        error = second.receive()
        assert error["code"] == "job_failed" and "scripted to fail" in error["message"]
        second.send({"type": "attach", "job_id": cancelled})
        assert second.receive()["state"] == "cancelled"
        assert second.receive()["message"].startswith("the upload was cancelled by the client")


def test_the_job_is_cancelled_when_its_client_does_not_come_back(tmp_path, gate):
    settings = make_settings(tmp_path / "data", reattach_grace_s=0.5, max_jobs_per_client=1)
    with RunningServer(settings, ScriptedEngine(points_per_view=POINTS, gate=gate)) as server:
        with server.connect() as first:
            hello(first)
            job_id = start_job(first)
            first.receive_until("points")
        status = server.wait_for_state(job_id)
        assert status["state"] == "cancelled"
        assert status["error"] == (
            "the client disconnected and did not attach again within 0.5 s "
            "(setting reattach_grace_s)"
        )
        assert not list(settings.data_dir.glob(f"jobs/{job_id}/photos/*"))
        gate.set()
        with server.connect() as again:  # its slot is free again
            again.upload({"a.jpg": RED, "b.jpg": RED})
            again.send({"type": "upload_complete", "count": 2})
            assert again.receive_until("reconstruction_complete")[-1]["total_points"] == 600


def test_only_the_client_that_made_the_job_may_attach(server, gate):
    mine = {"X-Forwarded-For": "10.0.0.1"}
    with server.connect(mine) as first:
        hello(first)
        job_id = start_job(first)
        first.receive_until("points")
    for headers, job in [({"X-Forwarded-For": "10.0.0.2"}, job_id), (mine, "A" * 22)]:
        other, refusal = attach(server, job, headers)
        with other:
            assert refusal["type"] == "error" and refusal["code"] == "attach"
            assert refusal["message"].startswith("there is no job with this id")
            assert job_id not in refusal["message"]
            other.send({"type": "ping"})
            assert other.receive() == {"type": "pong"}
    assert server.http.get(f"/api/jobs/{job_id}").json()["state"] == "running"
    second, attached = attach(server, job_id, mine)
    with second:
        assert attached["type"] == "attached"
        gate.set()
        assert second.receive_until("reconstruction_complete")[-1]["total_points"] == 3 * POINTS


def test_attach_takes_the_job_from_a_connection_the_server_still_holds(server, gate):
    """The client comes back before the server noticed that its old connection died."""
    with server.connect() as first:
        hello(first)
        job_id = start_job(first)
        first.receive_until("points")
        second, attached = attach(server, job_id)
        with second:
            assert attached["state"] == "running"
            notice = first.receive_until("error")[-1]
            assert notice["code"] == "attach" and "no longer follows it" in notice["message"]
            first.send({"type": "ping"})
            assert first.receive() == {"type": "pong"}
            gate.set()
            messages = second.receive_until("reconstruction_complete")
            assert messages[-1]["total_points"] == 3 * POINTS
            first.send({"type": "ping"})  # the old connection got nothing of the job meanwhile
            assert first.receive() == {"type": "pong"}


def test_attach_needs_the_feature_and_a_connection_without_a_job(server, gate):
    gate.set()
    with server.connect() as client:
        client.send({"type": "attach", "job_id": "A" * 22})
        assert "attach is an extension" in client.receive()["message"]
        hello(client)
        client.upload({"a.jpg": RED})
        client.send({"type": "attach", "job_id": "A" * 22})
        refusal = client.receive()
        assert refusal["code"] == "attach" and "already has a job" in refusal["message"]


def test_without_the_feature_a_drop_still_cancels_at_once(server, gate):
    with server.connect() as client:
        hello(client, ["job", "progress"])
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 3})
        job_id = client.receive()["job_id"]
    status = server.wait_for_state(job_id, states=("cancelled",))
    assert status["error"] == "the client disconnected"
