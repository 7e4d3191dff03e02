"""REST requests that fail on the server's side: an upload that breaks in any way leaves no job
(its client is not refused later for a job it never got), a delete while an export is being
made is answered and the download still served, photo names that are only dots still export,
and no error answer names a path of the server.

``no_path_in_errors`` is used by every test of the fault and race modules: it records each
error answer that the tests provoke and fails the test when one contains the data folder's path
(or the test's temporary folder, above it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import Reconstruction
from aetherscan.server import jobs as jobs_module
from aetherscan.server import results as results_module


@pytest.fixture
def no_path_in_errors(tmp_path: Path, monkeypatch) -> Iterator[list[tuple[str, int, str]]]:
    """Every error answer of every RunningServer's client in the test: (url, status, body).
    After the test, none may contain the temporary folder that holds the data folder."""
    errors: list[tuple[str, int, str]] = []
    enter = RunningServer.__enter__

    def record(response) -> None:
        if response.status_code >= 400:
            response.read()
            errors.append((str(response.url), response.status_code, response.text))

    def entered(self: RunningServer) -> RunningServer:
        running = enter(self)
        running.http.event_hooks["response"].append(record)
        return running

    monkeypatch.setattr(RunningServer, "__enter__", entered)
    yield errors
    secrets = {str(tmp_path), str(tmp_path.resolve()), "/tmp/", "pytest-of"}
    leaks = [(url, status, body) for url, status, body in errors if any(s in body for s in secrets)]
    assert not leaks, f"error answers name a server path: {leaks}"


pytestmark = pytest.mark.usefixtures("no_path_in_errors")

PHOTOS = {"a.jpg": photo_bytes((200, 0, 0)), "b.jpg": photo_bytes((0, 200, 0))}


def files(photos: dict[str, bytes]) -> list:
    return [("files", (name, data, "image/jpeg")) for name, data in photos.items()]


def service_of(server: RunningServer):
    """The running app's Service (storage, jobs), for what a test must do behind the API."""
    return server._server.config.app.state.service


def job_folders(server: RunningServer) -> list[str]:
    return sorted(p.name for p in (server.settings.data_dir / "jobs").iterdir())


def test_the_scan_sees_the_errors_of_the_tests(no_path_in_errors, server):
    assert server.http.get("/api/jobs/" + "x" * 22).status_code == 404
    assert no_path_in_errors and no_path_in_errors[-1][1] == 404


def test_an_upload_failing_with_an_internal_error_leaves_no_job(tmp_path, monkeypatch):
    """Anything but a refusal (here a bug in the photo check) used to leave the job open: the
    same client then got 429 until the server restarted."""
    real = jobs_module.check_photo

    def check_photo(label, data, settings):
        if label == "bug.jpg":
            raise RuntimeError(f"a bug while reading {tmp_path}/jobs/x/0001.jpg")
        return real(label, data, settings)

    monkeypatch.setattr(jobs_module, "check_photo", check_photo)
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with RunningServer(settings, ScriptedEngine(points_per_view=50)) as server:
        reply = server.http.post("/api/jobs", files=files({**PHOTOS, "bug.jpg": PHOTOS["a.jpg"]}))
        assert reply.status_code == 500
        assert reply.json()["detail"] == (
            "the upload failed on the server (an internal error, logged); no job was made"
        )
        assert job_folders(server) == []
        again = server.http.post("/api/jobs", files=files(PHOTOS))
        assert again.status_code == 201, again.text
        assert server.wait_for_state(again.json()["job_id"])["state"] == "done"


def test_a_delete_while_an_export_is_made_is_answered_and_the_download_served(
    tmp_path, monkeypatch
):
    """The delete used to remove the folder under the export, which answered 500 with the
    absolute path of the file it was writing. Now the delete is answered at once (the job is
    gone from the API), the download that was being made is served whole, and the files go
    when it has been sent."""
    making, go_on = threading.Event(), threading.Event()
    real = results_module.export

    def slow_export(reconstruction, fmt, path, **options):
        if fmt == "glb":
            making.set()
            assert go_on.wait(20)
        return real(reconstruction, fmt, path, **options)

    monkeypatch.setattr(results_module, "export", slow_export)
    with RunningServer(
        make_settings(tmp_path / "data"), ScriptedEngine(points_per_view=50)
    ) as server:
        job_id = server.http.post("/api/jobs", files=files(PHOTOS)).json()["job_id"]
        assert server.wait_for_state(job_id)["state"] == "done"
        download: dict = {}
        thread = threading.Thread(
            target=lambda: download.update(
                reply=server.http.get(f"/api/jobs/{job_id}/files/scene.glb")
            )
        )
        thread.start()
        assert making.wait(20)
        assert server.http.delete(f"/api/jobs/{job_id}").status_code == 204
        assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        assert job_folders(server) == [job_id]  # still read by the export
        go_on.set()
        thread.join(20)
        reply = download["reply"]
        assert reply.status_code == 200, reply.text
        assert reply.content[:4] == b"glTF"
        for _ in range(200):
            if not job_folders(server):
                break
            threading.Event().wait(0.02)
        assert job_folders(server) == []
        assert server.http.get(f"/api/jobs/{job_id}/files/scene.glb").status_code == 404


def test_an_export_that_fails_answers_a_sentence_without_paths(tmp_path, monkeypatch):
    real = results_module.export

    def broken(reconstruction, fmt, path, **options):
        if fmt == "colmap":
            raise ValueError(f"cannot write {path}: a bug")
        return real(reconstruction, fmt, path, **options)

    monkeypatch.setattr(results_module, "export", broken)
    with RunningServer(
        make_settings(tmp_path / "data"), ScriptedEngine(points_per_view=50)
    ) as server:
        job_id = server.http.post("/api/jobs", files=files(PHOTOS)).json()["job_id"]
        assert server.wait_for_state(job_id)["state"] == "done"
        reply = server.http.get(f"/api/jobs/{job_id}/files/colmap.zip")
        assert reply.status_code == 500
        assert reply.json()["detail"] == (
            "colmap.zip could not be made: an internal error (ValueError: cannot write "
            "colmap.zip: a bug), logged for the server's operator; the job's other files can "
            "still be downloaded"
        )
        assert server.http.get(f"/api/jobs/{job_id}/files/scene.ply").status_code == 200


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No such file: '/srv/data/jobs/abc/result/x.glb'", "No such file: 'x.glb'"),
        ("[Errno 2] /a/b and /c/d/e.png", "[Errno 2] b and e.png"),
        ("a.jpg: cannot decode", "a.jpg: cannot decode"),
        ("1/2 of the views, http://host/api/jobs", "1/2 of the views, http://host/api/jobs"),
    ],
)
def test_without_paths_keeps_last_parts_only(text, expected):
    from aetherscan.server.storage import without_paths

    assert without_paths(text) == expected


def test_photos_named_with_dots_only_export_every_format(tmp_path):
    """``..jpg`` and ``...`` used to break depth.zip and scene.zip (500, "unknown file
    extension"); every download of such a job works."""

    class DepthEngine(ScriptedEngine):
        """The scripted engine with depth maps, so that depth.zip is made too."""

        def reconstruct(self, photos: list[Photo], observer: Observer | None = None):
            result: Reconstruction = super().reconstruct(photos, observer)
            for view in result.views:
                view.depth = np.full((6, 8), 2.0, np.float32)
                view.depth_confidence = np.ones((6, 8), np.float32)
                view.depth_K = np.array([[8.0, 0, 4], [0, 8.0, 3], [0, 0, 1]])
            return result

    names = ["..jpg", "...", ".", "..", ".hidden.jpg", "a..jpg"]
    photos = {name: photo_bytes((40 * i, 200 - 30 * i, 90)) for i, name in enumerate(names)}
    with RunningServer(make_settings(tmp_path / "data"), DepthEngine(points_per_view=50)) as server:
        job = server.http.post("/api/jobs", files=files(photos)).json()
        status = server.wait_for_state(job["job_id"])
        assert status["state"] == "done", status
        assert {"depth", "all"} <= set(status["downloads"])
        for fmt, url in status["downloads"].items():
            reply = server.http.get(url)
            assert reply.status_code == 200, (fmt, reply.text)
            assert len(reply.content) > 0, fmt
