"""Jobs and the worker that owns the engine.

One worker runs one reconstruction at a time on the engine's device, in a thread of its own so
the event loop stays free (the COLMAP engine itself spawns a child process); the other jobs wait
in a queue and learn their position. The engine's Observer calls arrive on that thread and are
handed to the event loop (``call_soon_threadsafe``), where each job publishes them to the
asyncio queues of its listeners: the WebSocket session that made it, if any. A job that is
cancelled (the cancel message, a disconnect, a delete) stops at the engine's next Observer call,
which raises ``Cancelled``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aetherscan.engines.base import Cancelled, Engine, EngineError, Observer, Photo
from aetherscan.reconstruction import PointCloud, Reconstruction
from aetherscan.server.results import download_urls, write_results
from aetherscan.server.storage import PhotoRecord, Storage
from aetherscan.server.uploads import Refused, check_mask, check_photo, check_size, make_label
from aetherscan.settings import Settings

log = logging.getLogger(__name__)

STOPPED = "the server was stopped while this job was running"
SWEEP_INTERVAL_S = 600.0
PHOTO_CHECKS_AT_ONCE = 2  # full decodes of big photos take memory; bound them


# Events a job publishes to its listeners, in order, ending with exactly one of the last three.
@dataclass
class QueuedEvent:
    position: int


@dataclass
class ProgressEvent:
    stage: str
    fraction: float
    message: str


@dataclass
class PointsEvent:
    cloud: PointCloud


@dataclass
class DoneEvent:
    reconstruction: Reconstruction
    downloads: dict[str, str]


@dataclass
class FailedEvent:
    reason: str


@dataclass
class CancelledEvent:
    reason: str


JobEvent = QueuedEvent | ProgressEvent | PointsEvent | DoneEvent | FailedEvent | CancelledEvent


@dataclass(eq=False)
class Job:
    """A job that is not finished yet: uploading, queued or running."""

    id: str
    client: str
    state: str = "uploading"
    photos: list[PhotoRecord] = field(default_factory=list)
    upload_bytes: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    deleted: bool = False
    listeners: list[asyncio.Queue[JobEvent]] = field(default_factory=list)

    def listen(self) -> asyncio.Queue[JobEvent]:
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.listeners.append(queue)
        return queue

    def publish(self, event: JobEvent) -> None:
        for queue in self.listeners:
            queue.put_nowait(event)


class _JobObserver(Observer):
    """Runs on the engine's thread: hands everything to the event loop, stops when cancelled."""

    def __init__(self, job: Job, manager: JobManager) -> None:
        self.job, self.manager = job, manager
        self.points_sent = 0

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.check()
        event = ProgressEvent(stage, float(fraction), message)
        self.manager.loop.call_soon_threadsafe(self.manager.on_progress, self.job, event)

    def points(self, cloud: PointCloud) -> None:
        self.check()
        if len(cloud):
            self.points_sent += len(cloud)
            self.manager.loop.call_soon_threadsafe(self.job.publish, PointsEvent(cloud))

    def check(self) -> None:
        if self.job.cancel_requested.is_set():
            raise Cancelled(self.job.cancel_reason)


class JobManager:
    def __init__(self, settings: Settings, storage: Storage, engine: Engine) -> None:
        self.settings, self.storage, self.engine = settings, storage, engine
        self.loop: asyncio.AbstractEventLoop
        self._open: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._photo_checks = asyncio.Semaphore(PHOTO_CHECKS_AT_ONCE)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._work()), asyncio.create_task(self._sweep())]

    async def stop(self) -> None:
        for job in list(self._open.values()):
            if job is self._running:
                job.cancel_reason = STOPPED
                job.cancel_requested.set()
                self.storage.set_state(job.id, "failed", error=STOPPED)
                self.storage.remove_inputs(job.id)
            else:
                self._close(job, "failed", STOPPED)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # Jobs ------------------------------------------------------------------------------------

    def open_job(self, client: str, source: str) -> Job:
        mine = sum(1 for job in self._open.values() if job.client == client)
        if mine >= self.settings.max_jobs_per_client:
            raise Refused(
                f"you already have {mine} unfinished jobs, the limit per client "
                f"(setting max_jobs_per_client = {self.settings.max_jobs_per_client}); "
                "wait for one to finish",
                status=429,
            )
        job = Job(id=secrets.token_urlsafe(16), client=client)
        self.storage.create_job(job.id, engine=self.engine.name, client=client, source=source)
        self._open[job.id] = job
        return job

    def get_open(self, job_id: str) -> Job | None:
        return self._open.get(job_id)

    def photo_label(self, job: Job, filename: str) -> str:
        return make_label(filename, {p.label for p in job.photos}, len(job.photos))

    def check_photo_size(self, job: Job, label: str, size: int) -> None:
        """Refuse a photo of ``size`` bytes that would break a limit of the job."""
        if job.state != "uploading":
            raise Refused("this job is not taking photos any more", code="upload", status=409)
        if len(job.photos) >= self.settings.max_photos_per_job:
            raise Refused(
                f"{label}: the job already has {len(job.photos)} photos, the limit "
                "(setting max_photos_per_job)",
                status=413,
            )
        check_size(label, size, job.upload_bytes, self.settings)

    async def add_photo(self, job: Job, filename: str, data: bytes) -> PhotoRecord:
        """Check a photo against the limits and decode it, then store it under its label."""
        label = self.photo_label(job, filename)
        self.check_photo_size(job, label, len(data))
        async with self._photo_checks:
            checked = await asyncio.to_thread(check_photo, label, data, self.settings)
        label = self.photo_label(job, filename)  # another photo may have taken it meanwhile
        if job.state != "uploading":  # cancelled while the photo was being decoded
            raise Refused("this job was cancelled", code="upload", status=409)
        try:
            photo = await asyncio.to_thread(
                self.storage.add_photo,
                job.id,
                label=label,
                data=data,
                extension=checked.extension,
                width=checked.width,
                height=checked.height,
            )
        except FileNotFoundError:
            raise Refused("this job was cancelled", code="upload", status=409) from None
        if job.state != "uploading":
            photo.path.unlink(missing_ok=True)
            raise Refused("this job was cancelled", code="upload", status=409)
        job.photos.append(photo)
        job.upload_bytes += len(data)
        return photo

    def photo_named(self, job: Job | None, label: str) -> PhotoRecord:
        """The photo of the job's upload labelled ``label``, for its mask."""
        photo = next((p for p in job.photos if p.label == label), None) if job else None
        if photo is None:
            raise Refused(
                f"{label}: no photo of this upload has that name, so the mask has no photo; "
                "send a mask after its photo, naming the photo as image_received did",
                code="bad_mask",
            )
        return photo

    def check_mask_size(self, job: Job, photo: PhotoRecord, size: int) -> None:
        """Refuse a mask of ``size`` bytes that would break a limit of the job (a mask that
        replaces one counts in its place)."""
        if job.state != "uploading":
            raise Refused("this job is not taking photos any more", code="upload", status=409)
        job_bytes = job.upload_bytes - photo.mask_bytes
        check_size(photo.label, size, job_bytes, self.settings, kind="mask")

    async def add_mask(self, job: Job, photo: PhotoRecord, data: bytes) -> None:
        """Check the mask of a photo of the job against the limits and the photo's size, then
        store it beside the photo, in place of an earlier mask of the photo."""
        self.check_mask_size(job, photo, len(data))
        size = (photo.width, photo.height)
        async with self._photo_checks:
            extension = await asyncio.to_thread(check_mask, photo.label, data, size, self.settings)
        if job.state != "uploading":  # cancelled while the mask was being decoded
            raise Refused("this job was cancelled", code="upload", status=409)
        try:
            photo.mask_path = await asyncio.to_thread(
                self.storage.set_mask, job.id, photo.index, data=data, extension=extension
            )
        except FileNotFoundError:
            raise Refused("this job was cancelled", code="upload", status=409) from None
        if job.state != "uploading":
            photo.mask_path.unlink(missing_ok=True)
            raise Refused("this job was cancelled", code="upload", status=409)
        job.upload_bytes += len(data) - photo.mask_bytes
        photo.mask_bytes = len(data)

    def submit(self, job: Job) -> int:
        """Queue the job; its position (jobs ahead of it) is returned."""
        if len(job.photos) < 2:
            raise Refused(
                f"a reconstruction needs at least 2 photos; {len(job.photos)} received",
                code="upload",
            )
        busy = len(self._queue) + (self._running is not None)
        if busy >= self.settings.max_jobs_total:
            raise Refused(
                f"the server has {busy} jobs queued or running, its limit "
                f"(setting max_jobs_total = {self.settings.max_jobs_total}); try again later",
                status=503,
            )
        if len(self._queue) >= self.settings.max_queue_length:
            raise Refused(
                f"{len(self._queue)} jobs are waiting, the length limit of the queue "
                f"(setting max_queue_length = {self.settings.max_queue_length}); try again later",
                status=503,
            )
        job.state = "queued"
        self.storage.set_state(job.id, "queued")
        self._queue.append(job)
        self._announce_positions()
        self._wakeup.set()
        return self.position(job) or 0

    def position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        return self._queue.index(job) + (self._running is not None)

    def cancel(self, job: Job, reason: str) -> None:
        """Stop the job: at once when uploading or queued, at the engine's next call when
        running. A finished job is left as it is: its results stay for REST, even when the
        session that made it gives up on a client that stopped reading its stream."""
        if job.state not in ("uploading", "queued", "running"):
            return
        if job.state == "running":
            if not job.cancel_requested.is_set():  # the first reason is the one to tell
                job.cancel_reason = reason
                job.cancel_requested.set()
            return
        if job.state == "queued":
            self._queue.remove(job)
            self._announce_positions()
        self._close(job, "cancelled", reason)

    def delete(self, job_id: str) -> bool:
        job = self._open.get(job_id)
        if job is not None:
            job.deleted = True
            self.cancel(job, "the job was deleted")
        return self.storage.delete(job_id) or job is not None

    # The worker --------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:
                self._wakeup.clear()
                continue
            job = self._running = self._queue.popleft()
            self._announce_positions()
            try:
                await self._execute(job)
            finally:
                self._running = None

    async def _execute(self, job: Job) -> None:
        job.state = "running"
        self.storage.set_state(job.id, "running")
        # Tell the waiting client at once that its job left the queue; the engine's own progress
        # may come late.
        self.on_progress(job, ProgressEvent("load", 0.0, "the reconstruction started"))
        observer = _JobObserver(job, self)
        started = time.perf_counter()
        try:
            reconstruction = await self.loop.run_in_executor(
                self._executor, self._reconstruct, job, observer
            )
        except Cancelled:
            self._close(job, "cancelled", job.cancel_reason or "the job was cancelled")
        except EngineError as exc:
            self._close(job, "failed", str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._close(
                job, "failed", f"internal error in the engine ({type(exc).__name__}: {exc})"
            )
        else:
            self._finish(job, reconstruction)
            log.info(
                "job %s: %d points in %.1f s",
                job.id,
                reconstruction.num_points,
                time.perf_counter() - started,
            )
        if job.deleted:
            self.storage.delete(job.id)

    def _reconstruct(self, job: Job, observer: _JobObserver) -> Reconstruction:
        """On the engine's thread: the reconstruction, streamed and saved."""
        photos = [Photo(photo.label, photo.path, photo.mask_path) for photo in job.photos]
        reconstruction = self.engine.reconstruct(photos, observer)
        if observer.points_sent == 0:
            # An engine that streams nothing: its clients still get the cloud, before the end.
            for index in range(len(reconstruction.views)):
                observer.points(reconstruction.view_cloud(index))
        observer.check()
        write_results(reconstruction, self.storage.result_dir(job.id))
        return reconstruction

    def on_progress(self, job: Job, event: ProgressEvent) -> None:
        if job.state == "running":
            self.storage.set_progress(job.id, event.stage, event.fraction, event.message)
            job.publish(event)

    def _finish(self, job: Job, reconstruction: Reconstruction) -> None:
        views = [
            {"name": v.name, "width": v.width, "height": v.height} for v in reconstruction.views
        ]
        dropped = [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped]
        self.storage.finish(
            job.id,
            num_points=reconstruction.num_points,
            views=views,
            dropped=dropped,
            quality=reconstruction.quality.to_json(),
            masks=reconstruction.masks,
        )
        job.state = "done"
        del self._open[job.id]
        job.publish(
            DoneEvent(reconstruction, download_urls(job.id, self.storage.result_dir(job.id)))
        )

    def _close(self, job: Job, state: str, reason: str) -> None:
        """End an unfinished job as failed or cancelled, removing its files except the record."""
        job.state = state
        self._open.pop(job.id, None)
        self.storage.set_state(job.id, state, error=reason)
        self.storage.remove_inputs(job.id)
        shutil.rmtree(self.storage.result_dir(job.id), ignore_errors=True)
        job.publish(FailedEvent(reason) if state == "failed" else CancelledEvent(reason))

    def _announce_positions(self) -> None:
        for job in self._queue:
            job.publish(QueuedEvent(self.position(job) or 0))

    async def _sweep(self) -> None:
        """Remove finished jobs older than result_ttl_hours, now and every few minutes."""
        ttl_s = self.settings.result_ttl_hours * 3600
        while True:
            for job_id in self.storage.expired(time.time() - ttl_s):
                if job_id not in self._open:
                    log.info("job %s expired", job_id)
                    self.storage.delete(job_id)
            await asyncio.sleep(min(SWEEP_INTERVAL_S, max(ttl_s / 4, 1.0)))
