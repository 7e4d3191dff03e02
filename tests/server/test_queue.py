"""Scale-out with real parts on loopback: ``aetherscan serve --broker``, ``aetherscan worker``
processes and a real redis-server (queue_kit.py); object storage in test_queue_storage.py,
faults in test_queue_faults.py."""

from __future__ import annotations

import re
import time

import pytest
from queue_kit import cluster, post_job, wait_until
from server_kit import Client, RunningServer, ScriptedEngine, make_settings, photo_bytes

pytestmark = pytest.mark.slow

PHOTOS = {
    "image1.jpg": photo_bytes((200, 30, 30)),
    "image2.jpg": photo_bytes((30, 200, 30)),
    "image3.jpg": photo_bytes((30, 30, 200)),
}
HELLO = {"type": "hello", "protocol": 1, "features": ["cameras", "binary_points", "quality", "job"]}


def ws_stream(url: str, hello: dict | None) -> list[str | bytes]:
    """Every message of one job sent over the WebSocket, as raw text and bytes."""
    with Client(url) as client:
        if hello is not None:
            client.send(hello)
            assert client.receive()["type"] == "welcome"  # the server's settings: not compared
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": len(PHOTOS)})
        client.receive_until("reconstruction_complete", timeout_s=60)
        return client.raw[1:] if hello is not None else client.raw


def without_ids(messages: list[str | bytes]) -> list[str | bytes]:
    pattern = re.compile(r'"job_id":"[^"]+"|/api/jobs/[A-Za-z0-9_-]+/')
    return [m if isinstance(m, bytes) else pattern.sub("<job>", m) for m in messages]


def test_the_queue_streams_what_the_in_process_worker_streams_byte_for_byte(tmp_path):
    """The seed's JSON points and the binary frames alike: a worker's events reach the
    WebSocket through Redis unchanged."""
    with RunningServer(make_settings(tmp_path / "local"), ScriptedEngine()) as local:
        url = f"ws://127.0.0.1:{local.port}/ws"
        expected = [without_ids(ws_stream(url, hello)) for hello in (None, HELLO)]
    with cluster(tmp_path / "queue") as running:
        running.start("a")
        url = f"ws://127.0.0.1:{running.port}/ws"
        streamed = [without_ids(ws_stream(url, hello)) for hello in (None, HELLO)]
    assert sum(isinstance(m, bytes) for m in streamed[1]) >= 3  # binary point frames
    assert any('"type":"points"' in m for m in streamed[0] if isinstance(m, str))
    assert streamed == expected


def test_two_workers_share_the_jobs_and_waiting_jobs_learn_their_position(tmp_path):
    env = {"AETHERSCAN_TEST_DELAY_S": "0.4"}  # about 1.2 s a job
    with cluster(tmp_path, env) as running:
        http = running.start("a", "b")
        ids = [post_job(http, PHOTOS) for _ in range(4)]
        positions = [http.get(f"/api/jobs/{job_id}").json()["position"] for job_id in ids]
        holders = set()

        def both_busy() -> bool:
            holders.update(filter(None, (running.lease_holder(job_id) for job_id in ids)))
            return holders == {"a", "b"}

        wait_until(both_busy, 20, "both workers to run a job")
        # The last job waits behind one queued job at least while both workers are busy.
        assert positions[3] is not None and positions[3] >= 1, positions
        # Over the WebSocket too: a fifth job hears its place, and its place change.
        with Client(f"ws://127.0.0.1:{running.port}/ws") as client:
            client.send({"type": "hello", "protocol": 1, "features": ["progress", "job"]})
            client.receive()
            client.upload(PHOTOS)
            client.send({"type": "upload_complete", "count": len(PHOTOS)})
            stream = client.receive_until("reconstruction_complete", timeout_s=60)
        places = [m["position"] for m in stream if isinstance(m, dict) and m["type"] == "queued"]
        assert places and places[0] >= 1 and places[-1] == 0, places
        assert places == sorted(places, reverse=True)
        for job_id in ids:
            status = running.wait_for(job_id, ("done", "failed", "cancelled"))
            assert status["state"] == "done", status
            assert status["num_points"] == 3 * 1200
            ply = http.get(f"/api/jobs/{job_id}/files/scene.ply")
            assert ply.status_code == 200 and ply.content.startswith(b"ply\n")
        assert http.get(f"/api/jobs/{ids[0]}/files/scene.glb").status_code == 200
        runs = {
            name: worker.log_text(100_000).count("): done in")
            for name, worker in running.workers.items()
        }
        assert sum(runs.values()) == 5 and min(runs.values()) >= 1, runs
        # The job's keys in Redis are gone once the server took its end.
        assert not running.redis.client().keys("aetherscan:job:*")


def test_a_cancel_reaches_the_remote_worker_within_two_seconds(tmp_path):
    env = {"AETHERSCAN_TEST_DELAY_S": "1.0"}
    with cluster(tmp_path, env) as running:
        http = running.start("a")
        job_id = post_job(http, {f"p{i}.jpg": data for i, data in enumerate(PHOTOS.values())})
        wait_until(lambda: running.lease_holder(job_id) == "a", 20, "the worker to take it")
        asked = time.monotonic()
        assert http.delete(f"/api/jobs/{job_id}").status_code in (202, 204)
        wait_until(lambda: "cancelled in" in running.workers["a"].log_text(), 10, "the stop")
        assert time.monotonic() - asked < 2.5
        wait_until(lambda: not (running.data_dir / "jobs" / job_id).exists(), 10, "the files")
        # The worker is free for the next job.
        next_id = post_job(http, PHOTOS)
        assert running.wait_for(next_id, ("done", "failed"))["state"] == "done"


def test_a_job_cancelled_while_it_waits_is_never_run(tmp_path):
    with cluster(tmp_path) as running:
        http = running.serve()
        waiting = post_job(http, PHOTOS)  # no worker yet: it waits in Redis
        kept = post_job(http, PHOTOS)
        assert http.delete(f"/api/jobs/{waiting}").status_code == 204
        assert http.get(f"/api/jobs/{waiting}").status_code == 404
        running.worker("a")
        assert running.wait_for(kept, ("done", "failed"))["state"] == "done"
        worker = running.workers["a"]
        said = f"job {waiting} (try 1): not run"
        wait_until(lambda: said in worker.log_text(100_000), 10, "the worker to drop it")
        assert worker.log_text(100_000).count("): done in") == 1
