"""A data folder that refuses a WebSocket upload's writes (disk full, read-only, not permitted):
the client is told why in a sentence without a path, the photos received before stay, the
session goes on and answers pings, and a job left holding nothing is closed, so that its
client's slot is free again once the folder takes writes."""

from __future__ import annotations

import errno
import os
import pathlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from server_kit import (
    RunningServer,
    ScriptedEngine,
    data_url,
    make_settings,
    mask_bytes,
    photo_bytes,
)

RED, GREEN = photo_bytes((220, 20, 20)), photo_bytes((20, 220, 20))
CAUSES = {
    errno.ENOSPC: "the server's disk is full",
    errno.EDQUOT: "the server's disk is full",
    errno.EACCES: "the server cannot write to its data folder",
    errno.EROFS: "the server cannot write to its data folder",
}
SOON_S = 10  # an answer that takes longer is no answer


def service_of(server: RunningServer):
    return server._server.config.app.state.service


@contextmanager
def refused_file_writes(monkeypatch, data_dir: pathlib.Path, number: int) -> Iterator[None]:
    """Every file written in the data folder fails as the OS fails it: OSError(number), naming
    the file's full path."""
    original = pathlib.Path.write_bytes

    def write_bytes(path: pathlib.Path, data: bytes) -> int:
        if data_dir in path.absolute().parents:
            raise OSError(number, os.strerror(number), str(path.absolute()))
        return original(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "write_bytes", write_bytes)
        yield


@contextmanager
def read_only_index(server: RunningServer) -> Iterator[None]:
    """The index refuses every write as a read-only database does (SQLITE_READONLY)."""
    storage = service_of(server).storage
    with storage._lock:
        storage._db.execute("PRAGMA query_only=1")
    try:
        yield
    finally:
        with storage._lock:
            storage._db.execute("PRAGMA query_only=0")


def assert_tells_the_cause(error: dict, cause: str, server: RunningServer) -> None:
    assert error["type"] == "error", error
    assert cause in error["message"], error
    assert str(server.settings.data_dir) not in error["message"]
    assert "/" not in error["message"], "no path"


def image(data: bytes, name: str) -> dict:
    return {"type": "image_data", "data": data_url(data), "filename": name}


@pytest.mark.parametrize("number", list(CAUSES), ids=errno.errorcode.get)
def test_a_refused_photo_is_explained_and_the_photos_before_it_stay(tmp_path, monkeypatch, number):
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with (
        RunningServer(settings, ScriptedEngine(points_per_view=100)) as server,
        server.connect() as client,
    ):
        assert client.upload({"a.jpg": RED})[0]["type"] == "image_received"
        with refused_file_writes(monkeypatch, settings.data_dir.absolute(), number):
            client.send(image(GREEN, "b.jpg"))
            error = client.receive(timeout_s=SOON_S)
            client.send({"type": "ping"})
            assert client.receive(timeout_s=SOON_S) == {"type": "pong"}
        assert_tells_the_cause(error, CAUSES[number], server)
        assert error["message"].startswith("b.jpg: ") and "1 photo was received" in error["message"]
        # Writes work again: the same session goes on with the photo it kept.
        assert client.upload({"b.jpg": GREEN})[0]["filename"] == "b.jpg"
        client.send({"type": "upload_complete", "count": 2})
        messages = client.receive_until("reconstruction_complete")
        assert messages[-1]["total_points"] == 200


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS], ids=errno.errorcode.get)
def test_a_job_whose_first_photo_is_refused_frees_its_slot(tmp_path, monkeypatch, number):
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with (
        RunningServer(settings, ScriptedEngine(points_per_view=100)) as server,
        server.connect() as client,
    ):
        client.send({"type": "hello", "features": ["job"]})
        client.receive()
        with refused_file_writes(monkeypatch, settings.data_dir.absolute(), number):
            client.send(image(RED, "a.jpg"))
            error = client.receive(timeout_s=SOON_S)
        assert_tells_the_cause(error, CAUSES[number], server)
        assert error["code"] == "storage" and "nothing was kept" in error["message"]
        # The slot is free: another connection of the same client, and REST, may open a job.
        with server.connect() as other:
            assert other.upload({"a.jpg": GREEN})[0]["type"] == "image_received"
        photos = [("files", (name, RED, "image/jpeg")) for name in ("a.jpg", "b.jpg")]
        assert server.http.post("/api/jobs", files=photos).status_code == 201
        server.wait_for_state(_only_rest_job(server))  # it holds the one slot until done
        client.upload({"a.jpg": RED, "b.jpg": GREEN})
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200


def _only_rest_job(server: RunningServer) -> str:
    storage = service_of(server).storage
    with storage._lock:
        (row,) = storage._db.execute("SELECT id FROM jobs WHERE source='rest'").fetchall()
    return row[0]


def test_a_read_only_index_refuses_photos_and_upload_complete_in_words(tmp_path):
    with (
        RunningServer(
            make_settings(tmp_path / "data"), ScriptedEngine(points_per_view=100)
        ) as server,
        server.connect() as client,
    ):
        client.send({"type": "hello", "features": ["masks"]})
        client.receive()
        client.upload({"a.jpg": RED, "b.jpg": GREEN})
        with read_only_index(server):
            client.send(image(RED, "c.jpg"))
            photo_error = client.receive(timeout_s=SOON_S)
            mask_error = client.send_mask("a.jpg", mask_bytes())
            client.send({"type": "upload_complete", "count": 2})
            queue_error = client.receive(timeout_s=SOON_S)
            client.send({"type": "ping"})
            assert client.receive(timeout_s=SOON_S) == {"type": "pong"}
        cause = "the server cannot write to its data folder"
        for error in (photo_error, mask_error, queue_error):
            assert_tells_the_cause(error, cause, server)
            assert error["code"] == "storage"
        assert "2 photos were received before and kept" in photo_error["message"]
        assert "the photo stays, without a mask" in mask_error["message"]
        assert "the 2 photos are kept" in queue_error["message"]
        # The index takes writes again: upload_complete, as the error said.
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200


def test_a_job_that_cannot_even_be_made_is_explained_and_leaves_no_slot(tmp_path):
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with (
        RunningServer(settings, ScriptedEngine(points_per_view=100)) as server,
        server.connect() as client,
    ):
        with read_only_index(server):
            client.send(image(RED, "a.jpg"))
            error = client.receive(timeout_s=SOON_S)
        assert_tells_the_cause(error, "the server cannot write to its data folder", server)
        assert error["message"].startswith("the upload could not be started: ")
        client.upload({"a.jpg": RED, "b.jpg": GREEN})
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200
