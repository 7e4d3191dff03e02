"""The engine's verdict on a result (Reconstruction.quality) and where its masks came from, on
every way a result is shown: the REST job, the WebSocket's reconstruction_complete (extension
'quality', for clients that opt in), cameras.json; kept across a restart."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.reconstruction import Quality
from aetherscan.server.storage import Storage

PHOTOS = {"a.jpg": photo_bytes((200, 30, 30)), "b.jpg": photo_bytes((30, 200, 30))}
UNCERTAIN = Quality("uncertain", ["only 2 of 9 photos were placed", "the cameras are too close"])
REST_FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]


def test_the_rest_job_has_the_verdict_once_done_and_null_before(tmp_path):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate, quality=UNCERTAIN)
    with RunningServer(make_settings(tmp_path), engine) as server:
        job_id = server.http.post("/api/jobs", files=REST_FILES).json()["job_id"]
        running = server.wait_for_state(job_id, states=("running",))
        assert running["quality"] is None and running["masks"] is None
        gate.set()
        done = server.wait_for_state(job_id)
        assert done["quality"] == {"verdict": "uncertain", "reasons": UNCERTAIN.reasons}
        assert done["masks"] == "none"
        cameras = server.http.get(done["downloads"]["cameras"]).json()
        assert cameras["quality"] == done["quality"] and cameras["masks"] == "none"
    # A restarted server still says it.
    with RunningServer(make_settings(tmp_path), ScriptedEngine()) as again:
        assert again.http.get(f"/api/jobs/{job_id}").json()["quality"] == done["quality"]


def test_a_failed_job_has_no_verdict(server):
    files = [*REST_FILES, ("files", ("fail.jpg", PHOTOS["a.jpg"], "image/jpeg"))]
    job_id = server.http.post("/api/jobs", files=files).json()["job_id"]
    status = server.wait_for_state(job_id)
    assert status["state"] == "failed" and status["quality"] is None


@pytest.mark.parametrize(
    ("hello", "keys"),
    [
        (None, ["type", "total_points"]),
        ({"type": "hello", "features": ["job"]}, ["type", "total_points", "job_id", "downloads"]),
        ({"type": "hello", "features": ["quality"]}, ["type", "total_points", "quality", "masks"]),
    ],
    ids=["no-hello", "job-only", "quality"],
)
def test_reconstruction_complete_carries_the_verdict_only_for_clients_that_opt_in(
    tmp_path, hello, keys
):
    engine = ScriptedEngine(quality=UNCERTAIN)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        if hello is not None:
            client.send(hello)
            client.receive()
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        complete = client.receive_until("reconstruction_complete")[-1]
    assert list(complete) == keys
    if "quality" in keys:
        assert complete["quality"] == {"verdict": "uncertain", "reasons": UNCERTAIN.reasons}
        assert complete["masks"] == "none"


@pytest.mark.parametrize(
    "quality",
    [Quality("good"), Quality("good", ["3 photos were blurry but placed"]), None],
    ids=["good", "good-with-a-note", "unchecked"],
)
def test_every_verdict_reaches_the_client_as_the_engine_gave_it(tmp_path, quality):
    engine = ScriptedEngine(quality=quality)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["quality", "job"]})
        client.receive()
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        complete = client.receive_until("reconstruction_complete")[-1]
        status = server.http.get(f"/api/jobs/{complete['job_id']}").json()
    expected = (quality or Quality.unchecked()).to_json()
    assert complete["quality"] == status["quality"] == expected


def test_an_index_from_before_the_verdict_is_upgraded_at_start(tmp_path):
    storage = Storage(tmp_path)
    storage.create_job("job-from-version-0-1", engine="e", client="c", source="rest")
    storage.add_photo(
        "job-from-version-0-1", label="a.jpg", data=b"xx", extension=".jpg", width=20, height=20
    )
    storage.finish("job-from-version-0-1", num_points=3, views=[], dropped=[])
    storage.close()
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:  # the columns 0.1 did not have
        for table, column in [("jobs", "quality"), ("jobs", "masks"), ("photos", "mask"),
                              ("photos", "mask_bytes")]:  # fmt: skip
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    again = Storage(tmp_path)
    record = again.get("job-from-version-0-1")
    assert record.state == "done" and record.quality is None and record.masks is None
    (photo,) = again.photos("job-from-version-0-1")
    assert photo.mask_path is None and photo.mask_bytes == 0
    again.close()
