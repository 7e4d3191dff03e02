"""The data folder: jobs, their photos and results on disk, indexed by an embedded SQLite database.

Layout (every name on disk is made here; client filenames are only labels in the index)::

    <data_dir>/index.sqlite3          jobs and photos (WAL: a SIGKILL loses no committed write)
    <data_dir>/jobs/<job_id>/photos/  0000.jpg, 0001.png, ...   inputs, while needed
                                      0000-mask.png, ...        the masks given with them
                                      0000-thumbnail.jpg, ...   small copies (on request)
    <data_dir>/jobs/<job_id>/result/  reconstruction.npz, scene.ply, cameras.json, exports
                                      (metres-<factor>/: the exports of a scaled job)
                                      (.making-*/: an export being written, moved in whole)
    <data_dir>/tmp/                   the temporary files of ``aetherscan serve`` (TMPDIR), such
                                      as the engine's working folders; emptied at each start
    <data_dir>/quarantine/            job folders that the index did not list at a start (a lost
                                      or replaced index): moved aside, never deleted

Every folder under jobs/ has a row: the row is written before the folder, and a delete marks
the row, removes the folder and only then the row, so a folder without a row was not made by
this code's normal course and is kept. A job being read (by the engine, an export, a download)
is removed when the last reader is done (``reading``).

A write that the data folder refuses (full, over quota, read-only, not permitted) raises
``StorageError``, whose message names the cause and no path.

All methods are called from the event loop's thread, except where a method says otherwise;
a lock makes the one connection safe to share anyway.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RESTARTED = "the server restarted while this job was running"
RESTARTED_UPLOADING = "the server restarted while the photos of this job were being uploaded"
FINISHED_STATES = ("done", "failed", "cancelled")
SCRATCH_PREFIX = ".making-"  # a folder in a result folder where an export is being written
TEMP_FOLDER = "tmp"
QUARANTINE_FOLDER = "quarantine"
INDEX_FILE = "index.sqlite3"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

DISK_FULL = (
    "the server's disk is full (or its storage quota is used up), so nothing more can be "
    "stored; try again later"
)
NOT_WRITABLE = (
    "the server cannot write to its data folder (it is read-only or not permitted); try again later"
)
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_REFUSING_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_SQLITE_REFUSING = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN}


class StorageError(Exception):
    """A write that the data folder refused or failed. ``message`` is a sentence for people
    that names the cause and no path (the log has the full error); ``status`` the HTTP status:
    507 full or over quota, 503 read-only, not permitted or failing."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class DataFolderError(Exception):
    """The data folder cannot be used at start-up; the message names the file and what to do."""


def storage_error(exc: OSError | sqlite3.Error) -> StorageError:
    """The StorageError that tells a client about ``exc``, without its path."""
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
        if code == sqlite3.SQLITE_FULL:
            return StorageError(DISK_FULL, 507)
        if code in _SQLITE_REFUSING:
            return StorageError(NOT_WRITABLE, 503)
        return StorageError(
            f"the server could not write to its index ({exc}); try again later", 503
        )
    if exc.errno in _FULL_ERRNOS:
        return StorageError(DISK_FULL, 507)
    if exc.errno in _REFUSING_ERRNOS:
        return StorageError(NOT_WRITABLE, 503)
    reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    return StorageError(f"the server could not write to its data folder ({reason}); try again", 503)


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn the data folder's refusal to write ``what`` into a StorageError (a missing file
    stays FileNotFoundError: its job was removed meanwhile). Logged with the full error."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except (OSError, sqlite3.Error) as exc:
        log.error("could not write %s: %s", what, exc)
        raise storage_error(exc) from exc


def without_paths(text: str) -> str:
    """``text`` (an exception's message, for a client) with every absolute path replaced by its
    last part, so that no message tells where the server keeps its files."""
    return re.sub(r"(?<![\w./])(?:/[^\s'\"/:,;()]+)+/([^\s'\"/:,;()]+)", r"\1", text)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    engine TEXT NOT NULL,
    client TEXT NOT NULL,
    source TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    fraction REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    num_points INTEGER NOT NULL DEFAULT 0,
    views TEXT NOT NULL DEFAULT '[]',
    dropped TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    finished_at REAL,
    quality TEXT,
    masks TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    metres_per_unit REAL,
    options TEXT
);
CREATE TABLE IF NOT EXISTS photos (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    file TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    mask TEXT,
    mask_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
"""
# Columns that came after the first data folders were made: added to an older index at start.
_ADDED_COLUMNS = {
    "jobs": {
        "quality": "TEXT",
        "masks": "TEXT",
        "deleted": "INTEGER NOT NULL DEFAULT 0",
        "metres_per_unit": "REAL",
        "options": "TEXT",
    },
    "photos": {"mask": "TEXT", "mask_bytes": "INTEGER NOT NULL DEFAULT 0"},
}


@dataclass
class JobRecord:
    id: str
    state: str
    engine: str
    client: str
    source: str  # "ws" or "rest"
    stage: str
    fraction: float
    message: str
    error: str | None
    num_points: int
    views: list[dict]  # [{"name", "width", "height"}] of the registered photos
    dropped: list[dict]  # [{"name", "reason"}]
    created_at: float
    finished_at: float | None
    quality: dict | None = None  # Quality.to_json() of the result, once done
    masks: str | None = None  # Reconstruction.masks, once done
    metres_per_unit: float | None = None  # the scale a client set; None: the engine's units
    options: dict | None = None  # JobOptions.chosen() of the job, as submitted


@dataclass
class PhotoRecord:
    index: int
    label: str
    path: Path
    width: int
    height: int
    bytes: int
    mask_path: Path | None = None
    mask_bytes: int = 0


def is_job_id(text: str) -> bool:
    """Whether text can be a job id; anything else never reaches the filesystem."""
    return bool(_JOB_ID.match(text))


class Storage:
    def __init__(self, data_dir: Path, *, jobs_run_elsewhere: bool = False) -> None:
        """``jobs_run_elsewhere``: queued and running jobs belong to workers that outlive this
        process (``aetherscan.server.queued``), so a start keeps them, their photos and their
        results; otherwise a start fails them."""
        self.data_dir = Path(data_dir)
        self.jobs_run_elsewhere = jobs_run_elsewhere
        # Told (job id, whole job) after a job's files or its photos were removed here, for a
        # copy kept elsewhere (object storage).
        self.on_removed: Callable[[str, bool], None] | None = None
        self.temp_dir = self.data_dir / TEMP_FOLDER
        self.quarantine_dir = self.data_dir / QUARANTINE_FOLDER
        self._lock = threading.Lock()
        self._readers: dict[str, int] = {}  # job id -> engine runs and downloads reading it
        try:
            (self.data_dir / "jobs").mkdir(parents=True, exist_ok=True)
            self.temp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            message = (
                f"the data folder {self.data_dir} cannot be used ({exc.strerror}): give the "
                "server's user the right to write there, or choose another folder (setting "
                "data_dir, --data-dir)"
            )
            log.error("%s", message)
            raise DataFolderError(message) from exc
        self._db = self._open_index(self.data_dir / INDEX_FILE)
        self._recover()

    def _open_index(self, path: Path) -> sqlite3.Connection:
        """The index, made or brought up to date; a DataFolderError that names the file and
        what to do when it cannot be read."""
        db = None
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            db.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            message = (
                f"the index of the data folder, {path}, cannot be used ({exc}). Stop the "
                f"server, move that file away (with {path.name}-wal and {path.name}-shm if they "
                f"are there), for example to {path.name}.damaged, and start again: a new index "
                f"is made, and the job folders it does not list are moved to "
                f"{self.quarantine_dir}, not deleted"
            )
            log.error("%s", message)
            raise DataFolderError(message) from exc
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _recover(self) -> None:
        """Jobs that a previous process left unfinished are failed, with the reason; deletes it
        left half done are finished; folders the index does not list are quarantined."""
        now = time.time()
        kept = ("queued", "running") if self.jobs_run_elsewhere else ()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, state FROM jobs WHERE state NOT IN (?, ?, ?) AND deleted=0",
                FINISHED_STATES,
            ).fetchall()
            rows = [row for row in rows if row["state"] not in kept]
            for row in rows:
                reason = RESTARTED_UPLOADING if row["state"] == "uploading" else RESTARTED
                self._db.execute(
                    "UPDATE jobs SET state='failed', error=?, finished_at=? WHERE id=?",
                    (reason, now, row["id"]),
                )
            deleted = [row[0] for row in self._db.execute("SELECT id FROM jobs WHERE deleted=1")]
        for row in rows:
            self.remove_inputs(row["id"])
            # Results half written when the process died: the job never became done.
            shutil.rmtree(self.result_dir(row["id"]), ignore_errors=True)
        for job_id in deleted:
            self._remove(job_id)
        self._quarantine_unknown()
        # Exports that were being made when the process died, and its temporary files.
        for scratch in (self.data_dir / "jobs").glob(f"*/result/{SCRATCH_PREFIX}*"):
            shutil.rmtree(scratch, ignore_errors=True)
        for leftover in self.temp_dir.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def _quarantine_unknown(self) -> None:
        """Move what jobs/ holds without a row in the index to quarantine/, never deleting a
        file: the index may have been lost or replaced while the jobs' files were not."""
        known = self.job_ids()
        moved = []
        for entry in sorted((self.data_dir / "jobs").iterdir()):
            if entry.name in known:
                continue
            if entry.is_dir() and not entry.is_symlink() and not _holds_files(entry):
                shutil.rmtree(entry, ignore_errors=True)  # empty folders: nothing to keep
                continue
            target = self.quarantine_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{entry.name}"
            try:
                self.quarantine_dir.mkdir(exist_ok=True)
                entry.rename(target)
            except OSError as exc:
                log.error(
                    "jobs/%s is not in the index and could not be moved to %s (%s): it is left "
                    "where it is; move it away by hand",
                    entry.name,
                    self.quarantine_dir,
                    exc.strerror,
                )
                continue
            moved.append(target)
            log.warning("jobs/%s is not in the index: moved to %s", entry.name, target)
        if moved:
            log.warning(
                "%d job folders in %s are not listed in the index %s, so the server no longer "
                "knows them: they were moved to %s and nothing was deleted. If the index was "
                "lost or replaced, these are the jobs' photos (photos/) and results (result/); "
                "copy out what you need, then delete that folder to free the space",
                len(moved),
                self.data_dir / "jobs",
                self.data_dir / INDEX_FILE,
                self.quarantine_dir,
            )

    # Paths -----------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.data_dir / "jobs" / job_id

    def photos_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "photos"

    def result_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "result"

    # Jobs ------------------------------------------------------------------------------------

    def create_job(self, job_id: str, *, engine: str, client: str, source: str) -> None:
        """The job's row, then its folder; neither when the data folder refuses (StorageError)."""
        folder = self.photos_dir(job_id)
        with writing("a new job"), self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, engine, client, source, created_at)"
                " VALUES (?, 'uploading', ?, ?, ?, ?)",
                (job_id, engine, client, source, time.time()),
            )
        try:
            with writing("a new job's folder"):
                folder.mkdir(parents=True)
        except StorageError:
            with self._lock, writing("the removal of a job that could not be made"):
                self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            raise

    def get(self, job_id: str) -> JobRecord | None:
        if not is_job_id(job_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        if fields.pop("deleted"):
            return None
        fields["views"] = json.loads(fields["views"])
        fields["dropped"] = json.loads(fields["dropped"])
        fields["quality"] = json.loads(fields["quality"]) if fields["quality"] else None
        fields["options"] = json.loads(fields["options"]) if fields["options"] else None
        return JobRecord(**fields)

    def unfinished(self) -> list[JobRecord]:
        """Jobs queued or running, oldest first (those a start kept: ``jobs_run_elsewhere``)."""
        with self._lock:
            ids = [
                row[0]
                for row in self._db.execute(
                    "SELECT id FROM jobs WHERE state IN ('queued', 'running') AND deleted=0"
                    " ORDER BY created_at"
                )
            ]
        return [record for record in map(self.get, ids) if record is not None]

    def job_ids(self) -> set[str]:
        """Every job of the index, deleted ones whose files are still being removed included."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM jobs")}

    def set_state(self, job_id: str, state: str, *, error: str | None = None) -> None:
        finished = time.time() if state in FINISHED_STATES else None
        with writing("a job's state"), self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=?",
                (state, error, finished, job_id),
            )

    def set_options(self, job_id: str, options: dict) -> None:
        """The job options its client chose (``JobOptions.chosen()``), kept for its runs."""
        with writing("a job's options"), self._lock:
            self._db.execute("UPDATE jobs SET options=? WHERE id=?", (json.dumps(options), job_id))

    def set_engine(self, job_id: str, engine: str) -> None:
        """The engine that runs the job, once a worker says which (``serve --broker``)."""
        with writing("a job's engine"), self._lock:
            self._db.execute("UPDATE jobs SET engine=? WHERE id=?", (engine, job_id))

    def set_progress(self, job_id: str, stage: str, fraction: float, message: str) -> None:
        with writing("a job's progress"), self._lock:
            self._db.execute(
                "UPDATE jobs SET stage=?, fraction=?, message=? WHERE id=?",
                (stage, fraction, message, job_id),
            )

    def finish(
        self,
        job_id: str,
        *,
        num_points: int,
        views: list[dict],
        dropped: list[dict],
        quality: dict | None = None,
        masks: str | None = None,
    ) -> None:
        with writing("a finished job"), self._lock:
            self._db.execute(
                "UPDATE jobs SET state='done', stage='done', fraction=1, num_points=?, views=?,"
                " dropped=?, quality=?, masks=?, error=NULL, finished_at=? WHERE id=?",
                (
                    num_points,
                    json.dumps(views),
                    json.dumps(dropped),
                    json.dumps(quality) if quality is not None else None,
                    masks,
                    time.time(),
                    job_id,
                ),
            )

    def set_scale(self, job_id: str, metres_per_unit: float | None) -> None:
        """The length in metres of one unit of the job's scene, or None for the engine's own
        units; the downloads made after it are in metres."""
        with writing("a job's scale"), self._lock:
            self._db.execute(
                "UPDATE jobs SET metres_per_unit=? WHERE id=?", (metres_per_unit, job_id)
            )

    def delete(self, job_id: str) -> bool:
        """Delete a job: gone for clients at once, its files removed now or, while it is being
        read, when the last reader is done. False when there was no such job."""
        if not is_job_id(job_id):
            return False
        with writing("a delete"), self._lock:
            marked = self._db.execute(
                "UPDATE jobs SET deleted=1 WHERE id=? AND deleted=0", (job_id,)
            ).rowcount
            busy = job_id in self._readers
        if marked and not busy:
            self._remove(job_id)
        return marked > 0

    def hold(self, job_id: str) -> Callable[[], None]:
        """Hold the job's files while reading them, so that a delete meanwhile removes them
        only after; call the function returned (once or more) to let go."""
        with self._lock:
            self._readers[job_id] = self._readers.get(job_id, 0) + 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                left = self._readers.pop(job_id) - 1
                if left:
                    self._readers[job_id] = left
                row = self._db.execute("SELECT deleted FROM jobs WHERE id=?", (job_id,)).fetchone()
            if not left and row is not None and row["deleted"]:
                self._remove(job_id)

        return release

    @contextmanager
    def reading(self, job_id: str) -> Iterator[None]:
        """``hold`` for the length of a with block."""
        release = self.hold(job_id)
        try:
            yield
        finally:
            release()

    def _remove(self, job_id: str) -> None:
        """The files of a deleted job, then its row; the row stays while files do (a read-only
        folder), so that the next start tries again."""
        folder = self.job_dir(job_id)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            log.error("the files of the deleted job %s could not all be removed", job_id)
            return
        with contextlib.suppress(StorageError), writing("a delete"), self._lock:
            self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))  # else: at the next start
        if self.on_removed is not None:
            self.on_removed(job_id, True)

    def remove_inputs(self, job_id: str) -> None:
        shutil.rmtree(self.photos_dir(job_id), ignore_errors=True)
        if self.on_removed is not None:
            self.on_removed(job_id, False)

    def expired(self, older_than: float) -> list[str]:
        """Finished jobs that finished before the time ``older_than``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"
                " AND deleted=0",
                (older_than,),
            ).fetchall()
        return [row[0] for row in rows]

    # Photos ----------------------------------------------------------------------------------

    def add_photo(
        self,
        job_id: str,
        *,
        label: str,
        data: bytes,
        extension: str,
        width: int,
        height: int,
    ) -> PhotoRecord:
        """Store one photo under a name made here: the file, then its row, so that a refused
        write (StorageError) leaves neither. Safe to call from a worker thread."""
        with self._lock:
            index = self._db.execute(
                "SELECT COUNT(*) FROM photos WHERE job_id=?", (job_id,)
            ).fetchone()[0]
        path = self.photos_dir(job_id) / f"{index:04d}{extension}"
        if not path.parent.is_dir():  # the job was cancelled meanwhile: leave nothing behind
            raise FileNotFoundError(f"job {job_id} has no photos folder any more")
        _write_file(path, data, "a photo")
        try:
            with writing("a photo's row"), self._lock:
                self._db.execute(
                    "INSERT INTO photos (job_id, idx, label, file, width, height, bytes)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, index, label, path.name, width, height, len(data)),
                )
        except StorageError:
            path.unlink(missing_ok=True)
            raise
        return PhotoRecord(index, label, path, width, height, len(data))

    def set_mask(self, job_id: str, index: int, *, data: bytes, extension: str) -> Path:
        """Store the mask of photo ``index`` beside it (replacing an earlier one); safe to call
        from a worker thread."""
        path = self.photos_dir(job_id) / f"{index:04d}-mask{extension}"
        if not path.parent.is_dir():  # the job was cancelled meanwhile: leave nothing behind
            raise FileNotFoundError(f"job {job_id} has no photos folder any more")
        _write_file(path, data, "a mask")
        with writing("a mask's row"), self._lock:
            old = self._db.execute(
                "SELECT mask FROM photos WHERE job_id=? AND idx=?", (job_id, index)
            ).fetchone()
            self._db.execute(
                "UPDATE photos SET mask=?, mask_bytes=? WHERE job_id=? AND idx=?",
                (path.name, len(data), job_id, index),
            )
        if old is not None and old["mask"] and old["mask"] != path.name:
            (path.parent / old["mask"]).unlink(missing_ok=True)
        return path

    def photos(self, job_id: str) -> list[PhotoRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM photos WHERE job_id=? ORDER BY idx", (job_id,)
            ).fetchall()
        folder = self.photos_dir(job_id)
        return [
            PhotoRecord(
                r["idx"],
                r["label"],
                folder / r["file"],
                r["width"],
                r["height"],
                r["bytes"],
                folder / r["mask"] if r["mask"] else None,
                r["mask_bytes"],
            )
            for r in rows
        ]


def _write_file(path: Path, data: bytes, what: str) -> None:
    """Write ``path`` whole or not at all (through a .part file moved in place)."""
    tmp = path.with_suffix(".part")
    try:
        with writing(what):
            tmp.write_bytes(data)
            tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _holds_files(folder: Path) -> bool:
    return any(not entry.is_dir() or entry.is_symlink() for entry in folder.rglob("*"))
