"""The data folder: jobs, their photos and results on disk, indexed by an embedded SQLite database.

Layout (every name on disk is made here; client filenames are only labels in the index)::

    <data_dir>/index.sqlite3          jobs and photos (WAL: a SIGKILL loses no committed write)
    <data_dir>/jobs/<job_id>/photos/  0000.jpg, 0001.png, ...   inputs, while needed
                                      0000-mask.png, ...        the masks given with them
    <data_dir>/jobs/<job_id>/result/  reconstruction.npz, scene.ply, cameras.json, exports
                                      (.making-*/: an export being written, moved in whole)
    <data_dir>/tmp/                   the temporary files of ``aetherscan serve`` (TMPDIR), such
                                      as the engine's working folders; emptied at each start

All methods are called from the event loop's thread, except where a method says otherwise;
a lock makes the one connection safe to share anyway.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RESTARTED = "the server restarted while this job was running"
RESTARTED_UPLOADING = "the server restarted while the photos of this job were being uploaded"
FINISHED_STATES = ("done", "failed", "cancelled")
SCRATCH_PREFIX = ".making-"  # a folder in a result folder where an export is being written
TEMP_FOLDER = "tmp"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

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
    masks TEXT
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
    "jobs": {"quality": "TEXT", "masks": "TEXT"},
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
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        (self.data_dir / "jobs").mkdir(parents=True, exist_ok=True)
        self.temp_dir = self.data_dir / TEMP_FOLDER
        self.temp_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.data_dir / "index.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _recover(self) -> None:
        """Jobs that a previous process left unfinished are failed, with the reason."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, state FROM jobs WHERE state NOT IN (?, ?, ?)", FINISHED_STATES
            ).fetchall()
            for row in rows:
                reason = RESTARTED_UPLOADING if row["state"] == "uploading" else RESTARTED
                self._db.execute(
                    "UPDATE jobs SET state='failed', error=?, finished_at=? WHERE id=?",
                    (reason, now, row["id"]),
                )
        for row in rows:
            self.remove_inputs(row["id"])
            # Results half written when the process died: the job never became done.
            shutil.rmtree(self.result_dir(row["id"]), ignore_errors=True)
        # Folders without a row: a crash between creating the folder and the row, or a delete
        # that was interrupted.
        known = self.job_ids()
        for folder in (self.data_dir / "jobs").iterdir():
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
        # Exports that were being made when the process died, and its temporary files.
        for scratch in (self.data_dir / "jobs").glob(f"*/result/{SCRATCH_PREFIX}*"):
            shutil.rmtree(scratch, ignore_errors=True)
        for leftover in self.temp_dir.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

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
        self.photos_dir(job_id).mkdir(parents=True)
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, engine, client, source, created_at)"
                " VALUES (?, 'uploading', ?, ?, ?, ?)",
                (job_id, engine, client, source, time.time()),
            )

    def get(self, job_id: str) -> JobRecord | None:
        if not is_job_id(job_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        fields["views"] = json.loads(fields["views"])
        fields["dropped"] = json.loads(fields["dropped"])
        fields["quality"] = json.loads(fields["quality"]) if fields["quality"] else None
        return JobRecord(**fields)

    def job_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM jobs")}

    def set_state(self, job_id: str, state: str, *, error: str | None = None) -> None:
        finished = time.time() if state in FINISHED_STATES else None
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=?",
                (state, error, finished, job_id),
            )

    def set_progress(self, job_id: str, stage: str, fraction: float, message: str) -> None:
        with self._lock:
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
        with self._lock:
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

    def delete(self, job_id: str) -> bool:
        """Remove a job's row and files; False when there was no such job."""
        if not is_job_id(job_id):
            return False
        with self._lock:
            deleted = self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return deleted > 0

    def remove_inputs(self, job_id: str) -> None:
        shutil.rmtree(self.photos_dir(job_id), ignore_errors=True)

    def expired(self, older_than: float) -> list[str]:
        """Finished jobs that finished before the time ``older_than``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?",
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
        """Store one photo under a name made here; safe to call from a worker thread."""
        with self._lock:
            index = self._db.execute(
                "SELECT COUNT(*) FROM photos WHERE job_id=?", (job_id,)
            ).fetchone()[0]
            file = f"{index:04d}{extension}"
            self._db.execute(
                "INSERT INTO photos (job_id, idx, label, file, width, height, bytes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, index, label, file, width, height, len(data)),
            )
        path = self.photos_dir(job_id) / file
        if not path.parent.is_dir():  # the job was cancelled meanwhile: leave nothing behind
            raise FileNotFoundError(f"job {job_id} has no photos folder any more")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return PhotoRecord(index, label, path, width, height, len(data))

    def set_mask(self, job_id: str, index: int, *, data: bytes, extension: str) -> Path:
        """Store the mask of photo ``index`` beside it (replacing an earlier one); safe to call
        from a worker thread."""
        path = self.photos_dir(job_id) / f"{index:04d}-mask{extension}"
        if not path.parent.is_dir():  # the job was cancelled meanwhile: leave nothing behind
            raise FileNotFoundError(f"job {job_id} has no photos folder any more")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        with self._lock:
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
