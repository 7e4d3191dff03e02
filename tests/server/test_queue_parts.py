"""The parts of the scale-out one by one: the events' encoding, the Lua scripts that take, renew
and end a job (on a real redis-server), the data folder as a store, engine plug-ins and the
worker command's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from queue_kit import RedisServer

from aetherscan.cli import main
from aetherscan.engines import EngineError, create_engine
from aetherscan.engines.base import Preview, PreviewCamera
from aetherscan.reconstruction import PointCloud
from aetherscan.server.protocol import encode_points
from aetherscan.server.ws import _preview_message
from aetherscan.settings import Settings
from aetherscan.workers.blobs import FolderBlobs
from aetherscan.workers.channel import (
    CLAIM_SCRIPT,
    END_SCRIPT,
    RENEW_SCRIPT,
    RETRY_SCRIPT,
    Event,
    JobKeys,
)


def cloud(n: int, seed: int = 0) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(
        rng.normal(size=(n, 3)).astype(np.float32) * 1e3,
        rng.integers(0, 256, (n, 3)).astype(np.uint8),
        rng.random(n).astype(np.float32),
        rng.integers(0, 40, n).astype(np.int32),
    )


def through_redis(event: Event) -> Event:
    """As the server reads an event: Redis hands back the fields as bytes."""
    return Event.from_fields({k.encode(): v for k, v in event.fields().items()})


def test_points_keep_every_bit_and_encode_to_the_same_messages():
    sent = cloud(7000)
    got = through_redis(Event("points", 2, sent))
    assert got.kind == "points" and got.attempt == 2
    for name in ("xyz", "rgb", "confidence", "view_index"):
        a, b = getattr(sent, name), getattr(got.data, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    for binary in (False, True):
        assert encode_points(got.data, binary) == encode_points(sent, binary)


def test_an_empty_cloud_and_a_preview_survive_the_trip():
    assert len(through_redis(Event("points", 1, cloud(0))).data) == 0
    K = np.array([[812.123456789, 0, 320.5], [0, 811.9, 240.25], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, 3] = [0.1, -1 / 3, 2.5e-9]
    preview = Preview([PreviewCamera("a.jpg", 640, 480, K, pose)], cloud(50, 1), "first look")
    got = through_redis(Event("preview", 1, preview)).data
    assert got.cameras[0].K.tobytes() == K.tobytes()
    assert got.cameras[0].cam_from_world.tobytes() == pose.tobytes()
    assert _preview_message(got).to_json() == _preview_message(preview).to_json()


def test_json_events_keep_floats_exactly():
    data = {"stage": "mapping", "fraction": 0.1 + 0.2, "message": "été ✓"}
    assert through_redis(Event("progress", 1, data)).data == data


@pytest.fixture(scope="module")
def redis_client(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.client()
    finally:
        server.stop()


def claim(client, keys: JobKeys, attempt: int, worker: str, most: int = 3) -> str:
    return client.eval(CLAIM_SCRIPT, 2, keys.job, keys.lease, attempt, worker, 5000, most).decode()


def test_a_job_is_taken_by_one_worker_at_a_time_and_never_after_its_end(redis_client):
    keys = JobKeys("claims-one-at-a-time")
    assert claim(redis_client, keys, 1, "a") == "unknown"  # the server never queued it
    redis_client.hset(keys.job, mapping={"state": "queued", "attempt": 1})
    assert claim(redis_client, keys, 1, "a") == "claimed"
    assert claim(redis_client, keys, 1, "b") == "taken"  # a copy of the message
    assert redis_client.eval(RENEW_SCRIPT, 1, keys.lease, "b", 5000) == 0  # not b's
    assert redis_client.eval(RENEW_SCRIPT, 1, keys.lease, "a", 5000) == 1
    # Only the holder tells the end, once.
    end = Event("done", 1, {}).fields()
    args = (keys.job, keys.lease, keys.events, "b", "done", "done", b"1", end["body"])
    assert redis_client.eval(END_SCRIPT, 3, *args) == 0
    args = (keys.job, keys.lease, keys.events, "a", "done", "done", b"1", end["body"])
    assert redis_client.eval(END_SCRIPT, 3, *args) == 1
    assert redis_client.eval(END_SCRIPT, 3, *args) == 0
    assert redis_client.xlen(keys.events) == 1
    assert claim(redis_client, keys, 1, "b") == "finished"


def test_a_lost_worker_s_job_is_queued_again_once_and_old_messages_are_stale(redis_client):
    keys = JobKeys("claims-after-a-loss")
    redis_client.hset(keys.job, mapping={"state": "queued", "attempt": 1})
    assert claim(redis_client, keys, 1, "a", most=2) == "claimed"
    # While the lease holds, the server does not run it again.
    assert redis_client.eval(RETRY_SCRIPT, 2, keys.job, keys.lease, 1) == 0
    redis_client.delete(keys.lease)  # the worker died: its lease lapsed
    assert redis_client.eval(RETRY_SCRIPT, 2, keys.job, keys.lease, 1) == 2
    assert redis_client.eval(RETRY_SCRIPT, 2, keys.job, keys.lease, 1) == 0  # once
    assert claim(redis_client, keys, 1, "b", most=2) == "stale"  # the first message again
    assert claim(redis_client, keys, 2, "b", most=2) == "claimed"
    redis_client.delete(keys.lease)
    assert redis_client.eval(RETRY_SCRIPT, 2, keys.job, keys.lease, 2) == 3
    assert claim(redis_client, keys, 3, "c", most=2) == "exhausted"  # a third run: too many


def test_the_data_folder_publishes_a_result_whole_and_not_for_a_deleted_job(tmp_path):
    blobs = FolderBlobs(tmp_path)
    (tmp_path / "jobs" / "j1" / "result").mkdir(parents=True)
    (tmp_path / "jobs" / "j1" / "result" / "old.txt").write_text("old")
    scratch = blobs.scratch_folder("jobs/j1/result")
    (scratch / "scene.ply").write_text("new")
    blobs.publish_folder(scratch, "jobs/j1/result")
    assert sorted(p.name for p in (tmp_path / "jobs" / "j1").iterdir()) == ["result"]
    assert [p.name for p in (tmp_path / "jobs" / "j1" / "result").iterdir()] == ["scene.ply"]
    with pytest.raises(FileNotFoundError):
        blobs.scratch_folder("jobs/gone/result")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "jobs" / "j2").mkdir()
    blobs.delete_prefix("jobs/j2")  # deleted meanwhile
    with pytest.raises(FileNotFoundError):
        blobs.publish_folder(elsewhere, "jobs/j2/result")
    assert not elsewhere.exists()


def test_engine_plug_ins_load_by_name_and_bad_ones_say_why():
    assert create_engine("server_kit:ScriptedEngine").name == "scripted"
    with pytest.raises(EngineError, match="cannot be loaded"):
        create_engine("no_such_module_here:make")
    with pytest.raises(EngineError, match="made no engine"):
        create_engine("os:getcwd")
    with pytest.raises(ValueError, match=r"package\.module:factory"):
        Settings(engine="colmap2")


def test_a_worker_without_a_broker_says_what_to_set(monkeypatch, caplog):
    monkeypatch.delenv("AETHERSCAN_BROKER_URL", raising=False)
    assert main(["worker", "--engine", "colmap"]) == 2
    assert "--broker redis://" in caplog.text
    assert main(["worker", "--engine", "nope"]) == 2


def test_a_worker_whose_engine_cannot_be_built_stops_with_the_reason(tmp_path):
    from queue_kit import Cluster

    running = Cluster(tmp_path, {"AETHERSCAN_ENGINE": "queue_engines:no_such_factory"})
    try:
        worker = running.worker("a")
        worker.process.wait(timeout=60)  # it stops, rather than take jobs it must fail
        assert "the engine could not be built, so the worker stops" in worker.log_text()
        assert "no_such_factory" in worker.log_text()
    finally:
        running.stop()
