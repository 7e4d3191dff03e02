"""A data folder that is full or refuses writes, through the real server: REST answers 507 (disk
full, quota) or 503 (read-only, not permitted) with a sentence, the job that was opened is
closed so that its client's slot is free once space is back, and nothing already stored is
lost. The fault is an OSError of the errno the kernel gives, raised where the server writes
(``refusing``: Python's own open and mkdir, for paths in the data folder); where the machine
allows it, the folder is made read-only for real."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, mask_bytes, photo_bytes
from test_rest_faults import no_path_in_errors, service_of  # noqa: F401 (a fixture)

from aetherscan.server.storage import DISK_FULL, NOT_WRITABLE, StorageError, storage_error

pytestmark = pytest.mark.usefixtures("no_path_in_errors")

PHOTOS = {"a.jpg": photo_bytes((200, 0, 0)), "b.jpg": photo_bytes((0, 200, 0))}
FILES = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]
ANSWERS = {  # errno: (status, sentence)
    errno.ENOSPC: (507, DISK_FULL),
    errno.EDQUOT: (507, DISK_FULL),
    errno.EACCES: (503, NOT_WRITABLE),
    errno.EROFS: (503, NOT_WRITABLE),
}


@contextlib.contextmanager
def refusing(
    folder: Path, error: int, calls: tuple[str, ...] = ("open", "mkdir"), named: str = ""
) -> Iterator[None]:
    """Writes under ``folder`` (to paths containing ``named``) fail with OSError(error), as the
    kernel reports a full disk or a read-only folder: opening a file to write (``open``),
    making a folder (``mkdir``)."""
    folder = folder.resolve()
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def inside(path: object) -> bool:
        if not isinstance(path, str | bytes | os.PathLike):
            return False  # a file descriptor
        absolute = Path(os.path.abspath(os.fsdecode(path)))
        return absolute.is_relative_to(folder) and named in absolute.name

    def refuse(path: object) -> None:
        raise OSError(error, os.strerror(error), os.fsdecode(path))  # type: ignore[arg-type]

    def fake_open(file, mode="r", *args, **kwargs):
        if "open" in calls and any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if "open" in calls and writes and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if "mkdir" in calls and inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", fake_open)
        patch.setattr(io, "open", fake_open)
        patch.setattr(os, "open", fake_os_open)
        patch.setattr(os, "mkdir", fake_mkdir)
        yield


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def server(tmp_path):
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with RunningServer(settings, ScriptedEngine(points_per_view=100)) as running:
        yield running


def done_job(server: RunningServer) -> str:
    job_id = server.http.post("/api/jobs", files=FILES).json()["job_id"]
    assert server.wait_for_state(job_id)["state"] == "done"
    return job_id


@pytest.mark.parametrize("error", list(ANSWERS), ids=errno.errorcode.get)
@pytest.mark.parametrize("where", ["job folder", "photo"])
def test_an_upload_the_folder_refuses_is_answered_and_leaves_no_job(server, error, where):
    """Before: a bare 500, and the job stayed open: the same client got 429 until a restart."""
    kept = done_job(server)
    jobs = server.settings.data_dir / "jobs"
    before = snapshot(jobs / kept)
    status, sentence = ANSWERS[error]
    calls = ("mkdir",) if where == "job folder" else ("open",)
    with refusing(jobs, error, calls):
        reply = server.http.post("/api/jobs", files=FILES)
    assert reply.status_code == status
    if where == "job folder":
        assert reply.json()["detail"] == f"no job could be made: {sentence}"
    else:
        expected = f"a.jpg: the photo could not be stored: {sentence}; no job was made"
        assert reply.json()["detail"] == expected
    assert sorted(p.name for p in jobs.iterdir()) == [kept]
    assert snapshot(jobs / kept) == before  # nothing already stored is lost
    assert server.http.get(f"/api/jobs/{kept}/files/scene.ply").status_code == 200
    # Space is back: the same client (limit: one unfinished job) is not refused.
    assert done_job(server)


def test_a_mask_the_folder_refuses_is_answered_and_leaves_no_job(server):
    jobs = server.settings.data_dir / "jobs"
    files = [*FILES, ("masks", ("a.png", mask_bytes(), "image/png"))]
    with refusing(jobs, errno.ENOSPC, ("open",), named="-mask"):
        reply = server.http.post("/api/jobs", files=files)
    assert reply.status_code == 507
    assert reply.json()["detail"] == (
        f"a.jpg: its mask could not be stored: {DISK_FULL}; no job was made"
    )
    assert list(jobs.iterdir()) == []
    assert done_job(server)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS], ids=errno.errorcode.get)
def test_results_the_folder_refuses_fail_the_job_with_the_cause(tmp_path, error):
    gate = threading.Event()
    settings = make_settings(tmp_path / "data", max_jobs_per_client=1)
    with RunningServer(settings, ScriptedEngine(points_per_view=100, gate=gate)) as server:
        job_id = server.http.post("/api/jobs", files=FILES).json()["job_id"]
        server.wait_for_state(job_id, states=("running",))
        with refusing(server.settings.data_dir / "jobs", error):
            gate.set()
            status = server.wait_for_state(job_id)
        assert status["state"] == "failed"
        assert status["error"] == f"the results could not be stored: {ANSWERS[error][1]}"
        assert status["downloads"] == {}
        assert not (server.settings.data_dir / "jobs" / job_id / "result").exists()
        assert done_job(server)  # the worker goes on, the client's slot is free


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES], ids=errno.errorcode.get)
def test_an_export_the_folder_refuses_is_answered_and_made_later(server, error):
    """Before: 500 with the absolute path of the file being written."""
    job_id = done_job(server)
    status, sentence = ANSWERS[error]
    with refusing(server.settings.data_dir / "jobs", error):
        glb = server.http.get(f"/api/jobs/{job_id}/files/scene.glb")
        points = server.http.get(f"/api/jobs/{job_id}/points")
        ply = server.http.get(f"/api/jobs/{job_id}/files/scene.ply")
    assert (glb.status_code, glb.json()["detail"]) == (
        status,
        f"scene.glb could not be made: {sentence}",
    )
    assert (points.status_code, points.json()["detail"]) == (
        status,
        f"the point frames could not be made: {sentence}",
    )
    assert ply.status_code == 200  # made when the job finished: still served
    result = server.settings.data_dir / "jobs" / job_id / "result"
    assert not [p for p in result.iterdir() if p.name.startswith(".making-")]
    assert server.http.get(f"/api/jobs/{job_id}/files/scene.glb").content[:4] == b"glTF"
    assert server.http.get(f"/api/jobs/{job_id}/points").status_code == 200


def test_an_index_that_refuses_writes_is_answered_and_frees_the_slot(server):
    """The index itself refusing (a real SQLITE_READONLY from sqlite, on a read-only
    connection in place of the server's)."""
    kept = done_job(server)
    storage = service_of(server).storage
    index = server.settings.data_dir / "index.sqlite3"
    writable = storage._db
    read_only = sqlite3.connect(
        f"file:{index}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    read_only.row_factory = sqlite3.Row
    storage._db = read_only
    try:
        reply = server.http.post("/api/jobs", files=FILES)
        delete = server.http.delete(f"/api/jobs/{kept}")
    finally:
        storage._db = writable
        read_only.close()
    assert reply.status_code == 503
    assert reply.json()["detail"] == f"no job could be made: {NOT_WRITABLE}"
    assert delete.status_code == 503
    assert delete.json()["detail"] == f"the job could not be deleted: {NOT_WRITABLE}"
    assert server.http.get(f"/api/jobs/{kept}").json()["state"] == "done"
    assert done_job(server)


def test_real_sqlite_errors_are_told_apart(tmp_path):
    full = sqlite3.connect(tmp_path / "full.sqlite3", isolation_level=None)
    full.execute("CREATE TABLE t (x BLOB)")
    full.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.Error) as caught:
        full.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    assert (storage_error(caught.value).status, storage_error(caught.value).message) == (
        507,
        DISK_FULL,
    )
    read_only = sqlite3.connect(f"file:{tmp_path / 'full.sqlite3'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as caught:
        read_only.execute("INSERT INTO t VALUES (1)")
    assert storage_error(caught.value).status == 503
    assert storage_error(caught.value).message == NOT_WRITABLE
    assert isinstance(storage_error(OSError(errno.EIO, "I/O error", "/x/y")), StorageError)
    assert "/x" not in storage_error(OSError(errno.EIO, "I/O error", "/x/y")).message


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for real: by its mode, or for root (whom modes do not stop)
    by the immutable attribute; skips the test where neither works."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (chattr +i refused)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_really_read_only_folder_is_answered_and_frees_the_slot(server):
    kept = done_job(server)
    jobs = server.settings.data_dir / "jobs"
    with read_only(jobs):
        probe = jobs / "probe"
        with pytest.raises(OSError):
            probe.mkdir()
        reply = server.http.post("/api/jobs", files=FILES)
    assert reply.status_code == 503
    assert reply.json()["detail"] == f"no job could be made: {NOT_WRITABLE}"
    assert sorted(p.name for p in jobs.iterdir()) == [kept]
    assert done_job(server)
