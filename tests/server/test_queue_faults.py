"""Faults of the scale-out, each with real processes (queue_kit.py): a worker killed with
SIGKILL mid-job, a job whose workers keep dying, Redis restarted while jobs wait, the web server
restarted while a worker computes, and a worker that hangs past the time limit."""

from __future__ import annotations

import os
import time

import pytest
from queue_kit import cluster, post_job, wait_until
from server_kit import Client, photo_bytes

pytestmark = pytest.mark.slow

PHOTOS = {f"p{i}.jpg": photo_bytes((40 * i, 200 - 40 * i, 90)) for i in range(4)}


def group_gone(pid: int) -> bool:
    """Whether no process is left in the process group ``pid`` leads."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_job_whose_worker_is_killed_runs_again_on_another_and_finishes(tmp_path):
    env = {"AETHERSCAN_TEST_DELAY_S": "0.6"}  # 4 views: about 2.4 s a run
    with cluster(tmp_path, env) as running:
        running.start("a", "b")
        with Client(f"ws://127.0.0.1:{running.port}/ws") as client:
            client.send(
                {"type": "hello", "protocol": 1, "features": ["job", "progress", "restart"]}
            )
            client.receive()
            client.upload(PHOTOS)
            client.send({"type": "upload_complete", "count": len(PHOTOS)})
            first = client.receive_until("points")
            job_id = next(m["job_id"] for m in first if isinstance(m, dict) and "job_id" in m)
            victim = running.lease_holder(job_id)
            assert victim in ("a", "b")
            other = "b" if victim == "a" else "a"
            killed = time.monotonic()
            running.workers[victim].kill()  # the parent only: its pool child must follow it
            wait_until(lambda: running.lease_holder(job_id) == other, 20, "the other worker")
            rerun_after_s = time.monotonic() - killed
            rest = client.receive_until("reconstruction_complete", timeout_s=60)
        kinds = [m["type"] for m in rest if isinstance(m, dict)]
        assert "restarted" in kinds, kinds
        after = rest[kinds.index("restarted") + 1 :]
        points = sum(len(m["data"]) for m in after if isinstance(m, dict) and m["type"] == "points")
        assert rest[-1]["total_points"] == points == len(PHOTOS) * 1200
        assert rerun_after_s < 2 * 2 + 2, rerun_after_s  # the lease (2 s) and a read (1 s)
        wait_until(lambda: group_gone(running.workers[victim].pid), 10, "the orphan child to die")
        status = running.http.get(f"/api/jobs/{job_id}").json()
        assert status["state"] == "done" and status["num_points"] == len(PHOTOS) * 1200


def test_a_job_whose_workers_keep_dying_fails_after_max_tries(tmp_path):
    env = {"AETHERSCAN_TEST_DELAY_S": "0.6", "AETHERSCAN_MAX_TRIES": "1"}
    with cluster(tmp_path, env) as running:
        http = running.start("a", "b")
        job_id = post_job(http, PHOTOS)
        victim = wait_until(lambda: running.lease_holder(job_id), 20, "a worker to take it")
        running.workers[victim].kill()
        status = running.wait_for(job_id, ("failed", "done"), timeout_s=30)
        assert status["state"] == "failed"
        assert "started once" in status["error"] and "max_tries" in status["error"]


def test_jobs_waiting_while_redis_restarts_are_not_lost(tmp_path):
    with cluster(tmp_path) as running:
        http = running.serve()
        ids = [post_job(http, PHOTOS) for _ in range(2)]  # no worker yet: they wait in Redis
        queued = lambda: running.redis.client().llen("aetherscan") == 2  # noqa: E731
        wait_until(queued, 10, "both messages in Redis")
        running.redis.restart()
        running.worker("a")
        for job_id in ids:
            assert running.wait_for(job_id, ("done", "failed"), timeout_s=60)["state"] == "done"
        # And the server, which lost its connections meanwhile, queues new jobs.
        later = post_job(http, PHOTOS)
        assert running.wait_for(later, ("done", "failed"))["state"] == "done"


def test_jobs_waiting_while_redis_loses_its_data_are_sent_again(tmp_path):
    """Redis killed and started without its data (persistence off, a lost disk): the server,
    which has the photos, queues its waiting jobs again."""
    with cluster(tmp_path) as running:
        http = running.serve()
        ids = [post_job(http, PHOTOS) for _ in range(2)]
        queued = lambda: running.redis.client().llen("aetherscan") == 2  # noqa: E731
        wait_until(queued, 10, "both messages in Redis")
        running.redis.restart(lose_data=True)
        assert running.redis.client().dbsize() == 0
        running.worker("a")
        for job_id in ids:
            assert running.wait_for(job_id, ("done", "failed"), timeout_s=60)["state"] == "done"
        said = running.server.log_text(100_000)
        assert "Redis answers again" in said or "lost its record" in said


def test_a_result_lands_while_the_web_server_restarts(tmp_path):
    env = {"AETHERSCAN_TEST_DELAY_S": "1.0"}
    with cluster(tmp_path, env) as running:
        http = running.start("a")
        job_id = post_job(http, PHOTOS)
        wait_until(lambda: running.lease_holder(job_id) == "a", 20, "the worker to take it")
        assert running.server is not None
        running.server.kill()  # SIGKILL: nothing of the server's own shutdown runs
        log = running.workers["a"]
        wait_until(lambda: "): done in" in log.log_text(), 20, "the worker to finish")
        http = running.serve()  # the same data folder and port
        status = running.wait_for(job_id, ("done", "failed"), timeout_s=30)
        assert status["state"] == "done", status
        assert http.get(f"/api/jobs/{job_id}/files/scene.ply").status_code == 200


def test_a_worker_that_hangs_past_the_time_limit_fails_its_job_and_is_replaced(tmp_path):
    env = {"AETHERSCAN_ENGINE": "queue_engines:stubborn", "AETHERSCAN_JOB_TIME_LIMIT_S": "2"}
    with cluster(tmp_path, env) as running:
        http = running.start("a")
        worker = running.workers["a"]
        hanging = post_job(http, {f"hang{i}.jpg": data for i, data in enumerate(PHOTOS.values())})
        status = running.wait_for(hanging, ("failed", "done"), timeout_s=30)
        assert status["state"] == "failed"
        assert "time limit of 2 s" in status["error"] and "job_time_limit_s" in status["error"]
        # The stubborn child was killed; a new one runs the next job.
        wait_until(lambda: worker.log_text(100_000).count("engine is ready") >= 2, 30, "a child")
        assert worker.alive()
        after = post_job(http, PHOTOS)
        assert running.wait_for(after, ("failed", "done"), timeout_s=30)["state"] == "done"
        assert "Hard time limit" in worker.log_text(100_000)  # not the soft one: it was ignored
