"""The index at start-up, through real start-ups of the app on one data folder: an emptied or
replaced index never costs a job's files (the folders it does not list are quarantined, and the
log says what to do), a damaged one stops the start with a message that names the file and what
to do, and a delete that a previous process left half done is finished."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes
from test_rest_faults import no_path_in_errors  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("no_path_in_errors")
# A start that fails ends the server's thread with uvicorn's sys.exit(3): expected here.
refused_start = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

FILES = [
    ("files", ("a.jpg", photo_bytes((200, 0, 0)), "image/jpeg")),
    ("files", ("b.jpg", photo_bytes((0, 200, 0)), "image/jpeg")),
]


def start(data_dir) -> RunningServer:
    return RunningServer(make_settings(data_dir), ScriptedEngine(points_per_view=100))


def finished_jobs(data_dir, count: int) -> list[str]:
    with start(data_dir) as server:
        ids = [server.http.post("/api/jobs", files=FILES).json()["job_id"] for _ in range(count)]
        for job_id in ids:
            assert server.wait_for_state(job_id)["state"] == "done"
            assert server.http.get(f"/api/jobs/{job_id}/files/scene.glb").status_code == 200
    return ids


def files_of(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_emptied_index_quarantines_the_jobs_and_deletes_nothing(tmp_path, caplog):
    """Before: the start deleted every job's folder, silently."""
    data_dir = tmp_path / "data"
    ids = finished_jobs(data_dir, 2)
    kept = {job_id: files_of(data_dir / "jobs" / job_id) for job_id in ids}
    (data_dir / "index.sqlite3").write_bytes(b"")  # emptied: a valid index without jobs

    with caplog.at_level(logging.WARNING, "aetherscan.server.storage"), start(data_dir) as server:
        for job_id in ids:
            assert server.http.get(f"/api/jobs/{job_id}").status_code == 404
        assert list((data_dir / "jobs").iterdir()) == []
        quarantined = sorted((data_dir / "quarantine").iterdir())
        assert sorted(q.name.split("-", 2)[-1] for q in quarantined) == sorted(ids)
        for folder in quarantined:
            assert files_of(folder) == kept[folder.name.split("-", 2)[-1]]
        new = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert server.wait_for_state(new)["state"] == "done"
    summary = [
        r.getMessage() for r in caplog.records if "not listed in the index" in r.getMessage()
    ]
    assert len(summary) == 1
    assert str(data_dir / "quarantine") in summary[0]
    assert "nothing was deleted" in summary[0] and "delete that folder" in summary[0]

    with start(data_dir) as server:  # the next start leaves the quarantine alone
        assert sorted((data_dir / "quarantine").iterdir()) == quarantined
        assert server.http.get(f"/api/jobs/{new}").json()["state"] == "done"


@refused_start
def test_a_damaged_index_stops_the_start_naming_the_file_and_what_to_do(tmp_path, caplog):
    """Before: a bare traceback ("file is not a database") that named no file."""
    data_dir = tmp_path / "data"
    (job_id,) = finished_jobs(data_dir, 1)
    kept = files_of(data_dir / "jobs" / job_id)
    index = data_dir / "index.sqlite3"
    index.write_bytes(b"this is not an index" * 500)

    with caplog.at_level(logging.ERROR, "aetherscan.server.storage"), pytest.raises(RuntimeError):
        start(data_dir).__enter__()
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"the index of the data folder, {index}, cannot be used (file is not a database)" in (
        message
    )
    assert "move that file away" in message and "not deleted" in message
    assert files_of(data_dir / "jobs" / job_id) == kept

    index.rename(data_dir / "index.sqlite3.damaged")  # what the message says to do
    with start(data_dir) as server:
        (folder,) = (data_dir / "quarantine").iterdir()
        assert files_of(folder) == kept
        new = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        assert server.wait_for_state(new)["state"] == "done"


@refused_start
def test_an_index_damaged_inside_is_found_at_the_start(tmp_path, caplog):
    """A file that sqlite opens but whose pages are damaged (quick_check finds it)."""
    data_dir = tmp_path / "data"
    finished_jobs(data_dir, 1)
    index = data_dir / "index.sqlite3"
    with sqlite3.connect(index) as db:
        db.execute("PRAGMA journal_mode=DELETE")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(index.read_bytes())
    assert pages >= 2
    data[page_size : 2 * page_size] = b"\xff" * page_size  # the second page: a table's
    index.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, "aetherscan.server.storage"), pytest.raises(RuntimeError):
        start(data_dir).__enter__()
    assert any(str(index) in r.getMessage() for r in caplog.records)


def test_a_delete_left_half_done_is_finished_at_the_start(tmp_path):
    """A process that died between marking a job deleted and removing its files: the index
    explains the folder, so it is removed, not quarantined."""
    data_dir = tmp_path / "data"
    gone, kept = finished_jobs(data_dir, 2)
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        db.execute("UPDATE jobs SET deleted=1 WHERE id=?", (gone,))
    with start(data_dir) as server:
        assert server.http.get(f"/api/jobs/{gone}").status_code == 404
        assert server.http.get(f"/api/jobs/{kept}").json()["state"] == "done"
        assert [p.name for p in (data_dir / "jobs").iterdir()] == [kept]
        assert not (data_dir / "quarantine").exists()
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        assert db.execute("SELECT id FROM jobs").fetchall() == [(kept,)]


@refused_start
def test_a_data_folder_that_cannot_be_made_stops_the_start_naming_it(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data folder should be")
    with caplog.at_level(logging.ERROR, "aetherscan.server.storage"), pytest.raises(RuntimeError):
        start(blocker / "data").__enter__()
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message.startswith(f"the data folder {blocker / 'data'} cannot be used (")
    assert "choose another folder (setting data_dir, --data-dir)" in message
