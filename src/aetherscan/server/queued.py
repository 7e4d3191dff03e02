"""Jobs run by ``aetherscan worker`` processes on any number of machines (``serve --broker``).

The server keeps everything a person sees (the job index, the limits, the queue positions, the
WebSocket streams) and hands the reconstruction to Celery on Redis: a job's message carries its
id, its try and the keys of its photos in the store (``aetherscan.workers.blobs``), and a worker
that takes it streams the job's events back through Redis (``aetherscan.workers.channel``).
Here a follower per job reads that stream and publishes each event to the job's listeners, as
the in-process worker of ``aetherscan.server.jobs`` does: the same events, so the same messages.

- **Positions**: a queued job's position is the number of this server's jobs that wait for a
  worker before it; a job leaves the queue when a worker says it started it.
- **Cancel and delete** set the job's cancel key; the worker's lease thread sees it within half
  a second and the engine stops at its next step. A queued job is cancelled here at once, and
  the worker that takes its message later drops it.
- **A lost worker** (its lease lapsed, no end told): the job is queued again as its next try;
  ``max_tries`` runs that a worker did not finish fail it. Listeners that had points of the lost
  run get a ``RestartedEvent``.
- **Restarts**: the jobs of the index that are queued or running are followed again from the
  start of their streams, so a job that a worker finished while the server was down is done.
  Redis with its persistence on keeps queued jobs across its own restarts; the follower waits
  for it to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aetherscan.engines.base import EngineError, JobOptions, Observer, Photo
from aetherscan.reconstruction import Reconstruction, load_reconstruction
from aetherscan.server.jobs import (
    STOPPED,
    Job,
    JobManager,
    PointsEvent,
    PreviewEvent,
    ProgressEvent,
    RestartedEvent,
)
from aetherscan.server.results import RECONSTRUCTION_FILE
from aetherscan.server.storage import PhotoRecord, Storage, StorageError
from aetherscan.settings import Settings
from aetherscan.workers.blobs import FolderBlobs, open_blobs, photo_key, result_prefix
from aetherscan.workers.channel import (
    FINISHED,
    QUEUE,
    RETRY_SCRIPT,
    TASK,
    Event,
    JobKeys,
    text,
)

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000  # a follower's wait for events; when none came, it checks the lease
REDIS_RETRY_S = 1.0
DISPATCH_PATIENCE_S = 30.0  # how long a job waits for Redis to take it before it fails
LOST_REDIS = (
    "the job queue (Redis) lost this job's record each time it ran (is Redis restarted "
    "without its persistence?) (setting max_tries)"
)
RUNS_AGAIN = "the job runs again from the start on another worker (try {attempt} of {most})"
WORKER_LOST = (
    "the worker running this job stopped (killed, out of memory, or its machine lost): the "
    "job runs again from the start (try {attempt} of {most})"
)


class QueueEngine:
    """Stands for the workers' engines in the server, which runs none: its name is the one
    ``--engine`` gave the server (what the workers are expected to run)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def reconstruct(
        self,
        photos: Sequence[Photo],
        observer: Observer | None = None,
        *,
        refine_poses: bool | None = None,
    ) -> Reconstruction:
        """Never runs; takes every job option, which the workers' engines check."""
        raise EngineError("this server runs no engine: its workers do (setting broker_url)")


@dataclass(eq=False)
class _Remote:
    """What the server knows of a job it handed to the workers."""

    attempt: int = 1
    points: int = 0  # points its listeners got from the current try
    dispatched: bool = False
    release: Any = None  # the storage hold while a worker may read the job's files


class QueuedJobManager(JobManager):
    def __init__(self, settings: Settings, storage: Storage, engine_name: str) -> None:
        from aetherscan.workers.worker import make_celery

        super().__init__(settings, storage, QueueEngine(engine_name))
        self.celery = make_celery(settings)
        self.blobs = open_blobs(settings.storage_url, settings.data_dir, settings.s3_endpoint_url)
        self.redis = aioredis.Redis.from_url(
            settings.broker_url or "", socket_timeout=10, socket_connect_timeout=5
        )
        self._remote: dict[str, _Remote] = {}
        self._running_jobs: set[Job] = set()
        self._followers: dict[str, asyncio.Task] = {}
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="queue-io")
        if not isinstance(self.blobs, FolderBlobs):
            storage.on_removed = self._removed

    async def start(self) -> None:
        await super().start()
        for record in self.storage.unfinished():
            job = Job(id=record.id, client=record.client, state=record.state)
            job.options = JobOptions.from_json(record.options)
            job.photos = self.storage.photos(record.id)
            self._open[job.id] = job
            remote = self._remote[job.id] = _Remote(dispatched=True)
            remote.release = self.storage.hold(job.id)
            if record.state == "queued":
                self._queue.append(job)
            else:
                self._running_jobs.add(job)
            self._follow(job)
        log.info("following %d jobs that workers have queued or running", len(self._open))
        self._tasks.append(asyncio.create_task(self._watch_redis()))

    async def _watch_redis(self) -> None:
        """When Redis answers again after it did not, send the messages of the jobs waiting
        here once more: a Redis that restarted may have lost its last writes."""
        down = False
        while True:
            await asyncio.sleep(REDIS_RETRY_S)
            try:
                await self.redis.ping()
            except (RedisError, OSError):
                down = True
                continue
            if down:
                down = False
                log.warning(
                    "Redis answers again: the %d waiting jobs are sent again", len(self._queue)
                )
                for job in list(self._queue):
                    remote = self._remote.get(job.id)
                    if remote is not None and remote.dispatched:
                        with contextlib.suppress(RedisError, OSError):
                            await self._dispatch(job, remote.attempt, again=True)

    async def stop(self) -> None:
        """Stop following: jobs queued or running go on in the workers, and the next start
        follows them again. Uploads in progress fail."""
        for job in list(self._open.values()):
            if job.state == "uploading":
                self._close(job, "failed", STOPPED)
        for task in self._followers.values():
            task.cancel()
        await asyncio.gather(*self._followers.values(), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for remote in self._remote.values():
            if remote.release is not None:
                remote.release()
        await self.redis.aclose()
        self._io.shutdown(wait=False, cancel_futures=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # Uploads: photos go to the store as they arrive ---------------------------------------------

    async def add_photo(self, job: Job, filename: str, data: bytes) -> PhotoRecord:
        photo = await super().add_photo(job, filename, data)
        if not isinstance(self.blobs, FolderBlobs):
            try:
                await self._in_thread(
                    self.blobs.upload, photo.path, photo_key(job.id, photo.path.name)
                )
            except StorageError:
                job.photos.remove(photo)
                job.upload_bytes -= len(data)
                photo.path.unlink(missing_ok=True)
                raise
        return photo

    # The queue --------------------------------------------------------------------------------

    def busy(self) -> int:
        return len(self._queue) + len(self._running_jobs)

    def position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        return self._queue.index(job)

    async def _work(self) -> None:
        """Hand each newly queued job to the workers."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            for job in list(self._queue):
                remote = self._remote.setdefault(job.id, _Remote())
                if not remote.dispatched:
                    remote.dispatched = True
                    remote.release = self.storage.hold(job.id)
                    try:
                        await self._dispatch_patiently(job, remote.attempt)
                    except (RedisError, OSError, StorageError) as exc:
                        log.error("job %s could not be queued: %s", job.id, exc)
                        self._queue.remove(job)
                        self._announce_positions()
                        self._close(job, "failed", _queue_refused(exc))
                        self._forget(job)
                        continue
                    self._follow(job)

    async def _dispatch_patiently(self, job: Job, attempt: int) -> None:
        """``_dispatch``, tried again while Redis does not answer (a restart), for up to
        DISPATCH_PATIENCE_S."""
        deadline = asyncio.get_running_loop().time() + DISPATCH_PATIENCE_S
        while True:
            try:
                await self._dispatch(job, attempt)
                return
            except (RedisError, OSError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("job %s: Redis did not take it (%s); trying again", job.id, exc)
                await asyncio.sleep(REDIS_RETRY_S)

    async def _dispatch(self, job: Job, attempt: int, *, again: bool = False) -> None:
        """Record the job in Redis and send its message. ``again``: a queued job's message sent
        once more, in case Redis lost it (a copy is harmless: the worker that takes it second
        finds the job taken or ended); nothing is sent for a job that Redis has running."""
        keys = JobKeys(job.id)
        if (
            again
            and not await self.redis.hsetnx(keys.job, "state", "queued")
            and text(await self.redis.hget(keys.job, "state")) != "queued"
        ):
            return
        photos = []
        for photo in job.photos:
            entry = {"label": photo.label, "key": photo_key(job.id, photo.path.name)}
            if photo.mask_path is not None:
                entry["mask"] = photo_key(job.id, photo.mask_path.name)
                if not isinstance(self.blobs, FolderBlobs) and attempt == 1:
                    await self._in_thread(self.blobs.upload, photo.mask_path, entry["mask"])
            photos.append(entry)
        await self.redis.hset(keys.job, mapping={"state": "queued", "attempt": attempt})
        await self._in_thread(
            self.celery.send_task,
            TASK,
            args=[job.id, attempt, photos, job.options.chosen()],
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5},
        )

    def cancel(self, job: Job, reason: str) -> None:
        was = job.state
        super().cancel(job, reason)
        if was in ("queued", "running") and job.id in self._remote:
            asyncio.get_running_loop().create_task(self._tell_cancel(job, reason, was))

    async def _tell_cancel(self, job: Job, reason: str, was: str) -> None:
        keys = JobKeys(job.id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.cancel, reason, ex=24 * 3600)
                if was == "queued":  # no worker has it: the one that takes its message drops it
                    pipe.hset(keys.job, "state", "cancelled")
                    pipe.expire(keys.job, 24 * 3600)
                await pipe.execute()
        except RedisError as exc:
            log.error("job %s: its cancel could not reach the workers: %s", job.id, exc)

    # Following a job --------------------------------------------------------------------------

    def _follow(self, job: Job) -> None:
        if job.id not in self._followers:
            task = asyncio.get_running_loop().create_task(self._read_events(job))
            self._followers[job.id] = task

    async def _read_events(self, job: Job) -> None:
        keys = JobKeys(job.id)
        last = "0-0"
        try:
            while True:
                try:
                    reply: Any = await self.redis.xread(
                        {keys.events: last}, count=64, block=READ_BLOCK_MS
                    )
                    if not reply:
                        if await self._lost(job, keys):
                            return
                        continue
                    for entry_id, fields in reply[0][1]:
                        last = entry_id
                        if await self._on_event(job, Event.from_fields(fields)):
                            await self._done_with(job, keys)
                            return
                except (RedisError, OSError) as exc:
                    log.warning("job %s: Redis did not answer (%s); trying again", job.id, exc)
                    await asyncio.sleep(REDIS_RETRY_S)
        finally:
            self._followers.pop(job.id, None)

    async def _on_event(self, job: Job, event: Event) -> bool:
        """Publish one event of the job's stream; True at its end."""
        remote = self._remote[job.id]
        if event.attempt < remote.attempt:
            return False  # from a try that was given up (its worker lost its lease)
        remote.attempt = event.attempt
        kind = event.kind
        if kind == "started":
            self._started(job, remote, event)
        elif job.state != "running" and kind not in FINISHED:
            return False
        elif kind == "progress":
            data = event.data
            self.on_progress(job, ProgressEvent(data["stage"], data["fraction"], data["message"]))
        elif kind == "points":
            remote.points += len(event.data)
            job.publish(PointsEvent(event.data))
        elif kind == "preview":
            job.publish(PreviewEvent(event.data))
        elif kind == "done":
            await self._landed(job)
            return True
        elif kind in ("failed", "cancelled"):
            self._leave_queue(job)
            if job.id in self._open:
                self._close(job, kind, event.data["reason"])
            return True
        return False

    def _started(self, job: Job, remote: _Remote, event: Event) -> None:
        self._leave_queue(job)
        if job.id not in self._open:
            return  # cancelled here while its message waited: the worker stops at once
        job.state = "running"
        self._running_jobs.add(job)
        self._record_state(job, "running")
        with contextlib.suppress(StorageError):  # logged; the job goes on
            self.storage.set_engine(job.id, event.data.get("engine") or self.engine.name)
        if event.attempt == 1:
            self.on_progress(job, ProgressEvent("load", 0.0, "the reconstruction started"))
            return
        tries = {"attempt": event.attempt, "most": self.settings.max_tries}
        if remote.points:
            job.publish(RestartedEvent(WORKER_LOST.format(**tries)))
            remote.points = 0
        self.on_progress(job, ProgressEvent("load", 0.0, RUNS_AGAIN.format(**tries)))

    def _leave_queue(self, job: Job) -> None:
        if job in self._queue:
            self._queue.remove(job)
            self._announce_positions()

    async def _landed(self, job: Job) -> None:
        """A worker finished the job: its result into the data folder, then done."""
        self._leave_queue(job)
        if job.id not in self._open:
            return
        result_dir = self.storage.result_dir(job.id)
        try:
            if not isinstance(self.blobs, FolderBlobs):
                await self._in_thread(self.blobs.fetch_folder, result_prefix(job.id), result_dir)
            reconstruction = await self._in_thread(
                load_reconstruction, result_dir / RECONSTRUCTION_FILE
            )
        except (StorageError, OSError, ValueError) as exc:
            log.error("the result of job %s could not be read: %s", job.id, exc)
            self._close(job, "failed", f"the result of the worker could not be read: {exc}")
            return
        self._finish(job, reconstruction)
        if not isinstance(self.blobs, FolderBlobs):  # the server keeps its own copies
            self._io.submit(self.blobs.delete_prefix, f"jobs/{job.id}/photos")

    async def _lost(self, job: Job, keys: JobKeys) -> bool:
        """No event came for a while: when the job's worker is gone, queue its next try. True
        when the job has ended meanwhile (cancelled here, Redis lost it)."""
        if job.id not in self._open:  # cancelled while queued: the worker drops its message
            await self._done_with(job, keys)
            return True
        state = await self.redis.hget(keys.job, "state")
        remote = self._remote[job.id]
        if state is None:
            # Redis lost the job (restarted without its data): the server has its photos, so it
            # is queued again; a run that was going on is void (its worker lost its lease too).
            if job.state == "running":
                remote.attempt += 1
                if remote.attempt > self.settings.max_tries:
                    self._close(job, "failed", LOST_REDIS)
                    await self._done_with(job, keys)
                    return True
            log.warning(
                "job %s: Redis lost its record; queued again (try %d)", job.id, remote.attempt
            )
            await self._dispatch_patiently(job, remote.attempt)
            return False
        if text(state) != "running" or await self.redis.exists(keys.lease):
            return False
        attempt = await self.redis.eval(RETRY_SCRIPT, 2, keys.job, keys.lease, remote.attempt)
        if not attempt:
            return False
        log.warning("job %s: its worker was lost; queued again as try %d", job.id, attempt)
        remote.attempt = int(attempt)
        await self._dispatch_patiently(job, remote.attempt)
        return False

    async def _done_with(self, job: Job, keys: JobKeys) -> None:
        """The job ended: its keys in Redis go, and the hold on its files."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(*keys.all())
        self._forget(job)

    def _forget(self, job: Job) -> None:
        self._running_jobs.discard(job)
        remote = self._remote.pop(job.id, None)
        if remote is not None and remote.release is not None:
            remote.release()

    # Object storage ---------------------------------------------------------------------------

    def _removed(self, job_id: str, whole: bool) -> None:
        """The data folder let go of a job's photos (or of the job): so does the store."""
        prefix = f"jobs/{job_id}" if whole else f"jobs/{job_id}/photos"
        self._io.submit(self.blobs.delete_prefix, prefix)

    async def _in_thread(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._io, lambda: function(*args, **kwargs)
        )


def _queue_refused(exc: Exception) -> str:
    if isinstance(exc, StorageError):
        return f"the photos could not be stored for the workers: {exc}"
    return "the job queue (Redis) could not be reached; try again later"
