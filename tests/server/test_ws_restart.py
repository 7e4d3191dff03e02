"""A job that runs again after its worker died (RestartedEvent, published by the queue's
follower, aetherscan.server.queued) as the WebSocket tells it: with the feature ``restart``
the client drops what it had and ``total_points`` counts the new run only; without it the
connection's stream of the job ends with an error, and the job goes on."""

from __future__ import annotations

import threading

from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.jobs import RestartedEvent

PHOTOS = {f"image{i}.jpg": photo_bytes((60 * i, 90, 30)) for i in range(3)}
MESSAGE = "the worker running this job stopped: the job runs again from the start (try 2 of 3)"


def restart_held_job(server: RunningServer, client, features: list[str]) -> str:
    """Start a job held at the engine's gate after its first points, then restart it."""
    client.send({"type": "hello", "protocol": 1, "features": ["job", *features]})
    client.receive()
    client.upload(PHOTOS)
    client.send({"type": "upload_complete", "count": len(PHOTOS)})
    before = client.receive_until("points")
    job_id = next(m["job_id"] for m in before if isinstance(m, dict) and "job_id" in m)
    jobs = server._server.config.app.state.service.jobs
    job = jobs.get_open(job_id)
    jobs.loop.call_soon_threadsafe(job.publish, RestartedEvent(MESSAGE))
    return job_id


def test_with_the_feature_the_client_is_told_to_drop_what_it_had(tmp_path):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        restart_held_job(server, client, ["progress", "restart"])
        restarted = client.receive_until("restarted")[-1]
        assert restarted == {"type": "restarted", "message": MESSAGE}
        gate.set()
        after = client.receive_until("reconstruction_complete")
    points = sum(len(m["data"]) for m in after if isinstance(m, dict) and m["type"] == "points")
    assert after[-1]["total_points"] == points == 2 * engine.points_per_view  # views 2 and 3


def test_without_it_the_stream_ends_with_an_error_and_the_job_goes_on(tmp_path):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server:
        with server.connect() as client:
            job_id = restart_held_job(server, client, ["progress"])
            error = client.receive_until("error")[-1]
            assert error["code"] == "job_restarted"
            assert MESSAGE in error["message"] and "GET /api/jobs/" in error["message"]
            client.send({"type": "ping"})  # the session goes on, without the job's stream
            assert client.receive_until("pong")[-1] == {"type": "pong"}
        # Its connection is gone; the job is not cancelled for it.
        gate.set()
        assert server.wait_for_state(job_id)["state"] == "done"
