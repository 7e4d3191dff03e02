"""Every limit is a setting with a sensible default, announced to clients, and each refusal
names its setting, over the WebSocket and over REST. (Photos per job, bytes per photo and per
job, message size and the WebSocket job limits are in test_ws_refusals.py; the REST byte and
photo-count limits in test_rest_refusals.py; idle_timeout_s in test_stalled_connections.py.)"""

from __future__ import annotations

import threading

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.protocol import Limits
from aetherscan.settings import Settings

LIMITS = {
    "max_photos_per_job": 500,
    "max_photo_mb": 40.0,
    "max_job_mb": 2000.0,
    "max_photo_megapixels": 100.0,
    "max_message_mb": 64.0,
    "max_jobs_per_client": 2,
    "max_jobs_total": 16,
    "max_queue_length": 32,
    "idle_timeout_s": 600.0,
}
GOOD = photo_bytes()
TWO = [("files", ("a.jpg", GOOD, "image/jpeg")), ("files", ("b.jpg", GOOD, "image/jpeg"))]


def test_every_limit_is_a_setting_with_a_default_and_is_announced(tmp_path, monkeypatch):
    defaults = Settings()
    assert {name: getattr(defaults, name) for name in LIMITS} == LIMITS
    assert set(Limits.model_fields) == set(LIMITS)
    for name in LIMITS:  # each can be set from the environment
        monkeypatch.setenv(f"AETHERSCAN_{name.upper()}", "7")
    settings = make_settings(tmp_path)
    assert all(getattr(settings, name) == 7 for name in LIMITS)
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        assert server.http.get("/api/info").json()["limits"] == dict.fromkeys(LIMITS, 7)
        client.send({"type": "hello", "features": []})
        assert client.receive()["limits"] == dict.fromkeys(LIMITS, 7)


def test_the_pixel_limit_names_its_setting(tmp_path):
    settings = make_settings(tmp_path, max_photo_megapixels=0.002)  # 64x48 is 0.003 MP
    words = (
        "64x48 pixels (0 MP), more pixels than the limit of 0.002 MP (setting max_photo_megapixels)"
    )
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        assert words in client.upload({"a.jpg": GOOD})[0]["message"]
        reply = server.http.post("/api/jobs", files=TWO)
        assert reply.status_code == 400 and words in reply.json()["detail"]
        small = {"s.jpg": photo_bytes(size=(40, 40)), "t.jpg": photo_bytes(size=(40, 40))}
        assert [r["type"] for r in client.upload(small)] == ["image_received"] * 2


@pytest.mark.parametrize(
    "limits, third_status, words",
    [
        ({"max_jobs_per_client": 2}, 429, "the limit per client (setting max_jobs_per_client = 2)"),
        ({"max_jobs_total": 2}, 503, "its limit (setting max_jobs_total = 2); try again later"),
        ({"max_queue_length": 1}, 503, "queue (setting max_queue_length = 1); try again later"),
    ],
)
def test_job_count_limits_over_rest(tmp_path, limits, third_status, words):
    """One job runs (held), one waits; the third is refused while they are unfinished, and
    accepted once they are done."""
    gate = threading.Event()
    settings = make_settings(tmp_path, **{"max_jobs_per_client": 10, **limits})
    with RunningServer(settings, ScriptedEngine(gate=gate)) as server:
        first = server.http.post("/api/jobs", files=TWO).json()["job_id"]
        second = server.http.post("/api/jobs", files=TWO).json()["job_id"]
        refused = server.http.post("/api/jobs", files=TWO)
        assert refused.status_code == third_status and words in refused.json()["detail"]
        assert len(list((settings.data_dir / "jobs").iterdir())) == 2, "nothing left behind"
        gate.set()
        for job_id in (first, second):
            assert server.wait_for_state(job_id)["state"] == "done"
        assert server.http.post("/api/jobs", files=TWO).status_code == 201
