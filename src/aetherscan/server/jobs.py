"""Jobs and the worker that owns the engine.

One worker runs one reconstruction at a time on the engine's device, in a thread of its own so
the event loop stays free (the COLMAP engine itself spawns a child process); the other jobs wait
in a queue and learn their position. The engine's Observer calls arrive on that thread and are
handed to the event loop (``call_soon_threadsafe``), where each job publishes them to the
asyncio queues of its listeners: the WebSocket session that made it, if any. A job that is
cancelled (the cancel message, a disconnect, a delete) stops at the engine's next Observer call,
which raises ``Cancelled``; a deleted job's files are removed when it has stopped.

A write that the data folder refuses (``StorageError``) ends the job it was for and never the
worker: the job fails with the cause, and a job whose upload failed is ``discard``-ed, which
frees its client's slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aetherscan.engines.base import (
    Cancelled,
    Engine,
    EngineError,
    JobOptions,
    Observer,
    Photo,
    Preview,
    lacking_option,
    run_engine,
)
from aetherscan.reconstruction import PointCloud, Reconstruction
from aetherscan.server.results import download_urls, write_results
from aetherscan.server.storage import PhotoRecord, Storage, StorageError, without_paths
from aetherscan.server.uploads import (
    Refused,
    check_mask,
    check_photo,
    check_size,
    check_video_size,
    make_label,
)
from aetherscan.settings import Settings
from aetherscan.video import SampledVideo, VideoError, sample_video

if TYPE_CHECKING:
    from aetherscan.models.memory import MemoryPlan

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
class PreviewEvent:
    """A provisional look (``aetherscan.engines.base.Preview``); ``preview`` is None once a
    later one replaced it (the feed keeps only the newest: ``aetherscan.server.feeds``)."""

    preview: Preview | None


@dataclass
class RestartedEvent:
    """The worker running a queued job stopped (aetherscan.server.queued) and the job runs again
    from the start: what its listeners had of it is void."""

    message: str


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


JobEvent = (
    QueuedEvent
    | ProgressEvent
    | PointsEvent
    | PreviewEvent
    | RestartedEvent
    | DoneEvent
    | FailedEvent
    | CancelledEvent
)


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
    options: JobOptions = field(default_factory=JobOptions)
    memory_bytes: int = 0  # what the engine's memory plan predicts the job needs, when it plans
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

    def preview(self, preview: Preview) -> None:
        self.check()
        self.manager.loop.call_soon_threadsafe(self.job.publish, PreviewEvent(preview))

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
                self._record_state(job, "failed", STOPPED)
                self.storage.remove_inputs(job.id)
            else:
                self._close(job, "failed", STOPPED)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # Jobs ------------------------------------------------------------------------------------

    def open_job(self, client: str, source: str) -> Job:
        """A new job taking photos, counted against its client's limit until it is finished,
        cancelled or discarded. Refused over the limit; StorageError when it cannot be stored
        (then nothing is counted or kept)."""
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
        except StorageError as exc:
            raise StorageError(
                f"{label}: the photo could not be stored: {exc}", exc.status
            ) from exc
        if job.state != "uploading":
            photo.path.unlink(missing_ok=True)
            raise Refused("this job was cancelled", code="upload", status=409)
        job.photos.append(photo)
        job.upload_bytes += len(data)
        return photo

    async def add_video(
        self, job: Job, filename: str, path: Path
    ) -> tuple[list[PhotoRecord], SampledVideo]:
        """Choose frames of the video at ``path`` (``aetherscan.video``) and add each as a photo
        of the job, named by its time stamp. Refused for a video over the limits or one that
        cannot be decoded; a frame refused (a limit) keeps the frames added before it, which
        the Refused's ``added`` holds."""
        label = make_label(filename, set(), 0)
        if job.state != "uploading":
            raise Refused("this job is not taking photos any more", code="upload", status=409)
        check_video_size(label, path.stat().st_size, self.settings.max_video_mb)
        room = self.settings.max_photos_per_job - len(job.photos)
        if room <= 0:
            raise Refused(
                f"{label}: the job already has {len(job.photos)} photos, the limit "
                "(setting max_photos_per_job)",
                status=413,
            )
        async with self._photo_checks:
            try:
                sampled = await asyncio.to_thread(
                    sample_video,
                    path,
                    max_frames=min(self.settings.max_video_frames, room),
                    max_seconds=self.settings.max_video_seconds,
                    max_megapixels=self.settings.max_photo_megapixels,
                    name=label,
                )
            except VideoError as exc:
                raise Refused(str(exc), code="bad_photo", status=422) from None
        added = []
        for frame in sampled.frames:
            try:
                added.append(await self.add_photo(job, frame.name, frame.jpeg))
            except Refused as exc:
                exc.added = added  # type: ignore[attr-defined]
                raise
        return added, sampled

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
        except StorageError as exc:
            message = f"{photo.label}: its mask could not be stored: {exc}"
            raise StorageError(message, exc.status) from exc
        if job.state != "uploading":
            photo.mask_path.unlink(missing_ok=True)
            raise Refused("this job was cancelled", code="upload", status=409)
        job.upload_bytes += len(data) - photo.mask_bytes
        photo.mask_bytes = len(data)

    def submit(self, job: Job, options: JobOptions | None = None) -> int:
        """Queue the job with the options its client chose; its position (jobs ahead of it) is
        returned."""
        if len(job.photos) < 2:
            raise Refused(
                f"a reconstruction needs at least 2 photos; {len(job.photos)} received",
                code="upload",
            )
        plan = self._memory_plan(job)
        if plan is not None and not plan.fits:
            raise Refused(plan.sentence(), code="limit", status=413)
        options = options or JobOptions()
        lacking = lacking_option(self.engine, options)
        if lacking:
            raise Refused(lacking, code="upload")
        busy = self.busy()
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
        if options.chosen():
            self.storage.set_options(job.id, options.chosen())
        self.storage.set_state(job.id, "queued")  # StorageError: the job stays uploading
        job.options = options
        job.state = "queued"
        self._queue.append(job)
        self._announce_positions()
        self._wakeup.set()
        return self.position(job) or 0

    def _memory_plan(self, job: Job) -> MemoryPlan | None:
        """The engine's memory plan for the job (Fast3R's; None for engines without one),
        counting the memory of the job running now as free: the job runs after it. The engine
        plans again when the job starts, against the memory free then."""
        plan_photos = getattr(self.engine, "plan_photos", None)
        if plan_photos is None:
            return None
        running = self._running
        freed = running.memory_bytes if running is not None else 0
        plan = plan_photos([(p.width, p.height) for p in job.photos], freed_bytes=freed)
        if plan is not None:
            job.memory_bytes = plan.required_bytes
        return plan

    def busy(self) -> int:
        """Jobs queued or running."""
        return len(self._queue) + (self._running is not None)

    def position(self, job: Job) -> int | None:
        """Jobs ahead of a queued one: those before it in the queue and the one running."""
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

    def discard(self, job: Job, reason: str) -> None:
        """End an unfinished job that cannot go on (a photo could not be stored, its request
        failed) and delete it. Its listeners get FailedEvent(reason). An uploading or queued
        job's slot is free at once, whatever the data folder does (a running one's when the
        engine stops, at its next step); its record and files go as far as the folder allows,
        and what a read-only folder keeps the next start fails or removes. Never raises."""
        if job.state == "queued":
            self._queue.remove(job)
            self._announce_positions()
        if job.state in ("uploading", "queued"):
            self._close(job, "failed", reason)
        else:
            self.cancel(job, reason)
        try:
            self.storage.delete(job.id)
        except StorageError:
            log.warning(
                "job %s was discarded (%s); its record stays until a restart", job.id, reason
            )

    def delete(self, job_id: str) -> str | None:
        """Delete a job: None when there is no such job, "deleted" when its record and files
        are gone, "stopping" when it runs (it is cancelled, and its files are removed when the
        engine has stopped reading them; those of a download in progress, when it is sent). StorageError when the index refuses the delete."""
        if not self.storage.delete(job_id):
            return None  # no such job, or deleted already
        job = self._open.get(job_id)
        if job is None:
            return "deleted"
        self.cancel(job, "the job was deleted")
        return "stopping" if job.state == "running" else "deleted"

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
        with self.storage.reading(job.id):  # a delete meanwhile removes the files after
            await self._run(job)

    async def _run(self, job: Job) -> None:
        job.state = "running"
        if not self._record_state(job, "running"):
            self._close(job, "failed", "the job could not be started: the data folder refused it")
            return
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
            self._close(job, "failed", without_paths(str(exc)))
        except StorageError as exc:
            self._close(job, "failed", f"the results could not be stored: {exc}")
        except Exception as exc:
            log.exception("job %s failed", job.id)
            reason = without_paths(f"{type(exc).__name__}: {exc}")
            self._close(job, "failed", f"internal error in the engine ({reason})")
        else:
            self._finish(job, reconstruction)
            log.info(
                "job %s: %d points in %.1f s",
                job.id,
                reconstruction.num_points,
                time.perf_counter() - started,
            )

    def _reconstruct(self, job: Job, observer: _JobObserver) -> Reconstruction:
        """On the engine's thread: the reconstruction, streamed and saved."""
        photos = [Photo(photo.label, photo.path, photo.mask_path) for photo in job.photos]
        reconstruction = run_engine(self.engine, photos, observer, job.options)
        if observer.points_sent == 0:
            # An engine that streams nothing: its clients still get the cloud, before the end.
            for index in range(len(reconstruction.views)):
                observer.points(reconstruction.view_cloud(index))
        observer.check()
        write_results(reconstruction, self.storage.result_dir(job.id))
        return reconstruction

    def on_progress(self, job: Job, event: ProgressEvent) -> None:
        if job.state == "running":
            with contextlib.suppress(StorageError):  # logged; the listeners still hear it
                self.storage.set_progress(job.id, event.stage, event.fraction, event.message)
            job.publish(event)

    def _finish(self, job: Job, reconstruction: Reconstruction) -> None:
        views = [
            {"name": v.name, "width": v.width, "height": v.height} for v in reconstruction.views
        ]
        dropped = [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped]
        try:
            self.storage.finish(
                job.id,
                num_points=reconstruction.num_points,
                views=views,
                dropped=dropped,
                quality=reconstruction.quality.to_json(),
                masks=reconstruction.masks,
            )
        except StorageError as exc:
            self._close(job, "failed", f"the results could not be recorded: {exc}")
            return
        job.state = "done"
        del self._open[job.id]
        job.publish(
            DoneEvent(reconstruction, download_urls(job.id, self.storage.result_dir(job.id)))
        )

    def _close(self, job: Job, state: str, reason: str) -> None:
        """End an unfinished job as failed or cancelled, removing its files except the record."""
        job.state = state
        self._open.pop(job.id, None)
        self._record_state(job, state, reason)
        self.storage.remove_inputs(job.id)
        shutil.rmtree(self.storage.result_dir(job.id), ignore_errors=True)
        job.publish(FailedEvent(reason) if state == "failed" else CancelledEvent(reason))

    def _record_state(self, job: Job, state: str, reason: str | None = None) -> bool:
        """Write the job's state to the index; False (logged) when the data folder refuses."""
        try:
            self.storage.set_state(job.id, state, error=reason)
        except StorageError:
            return False
        return True

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
                    with contextlib.suppress(StorageError):  # logged; tried at the next sweep
                        self.storage.delete(job_id)
            await asyncio.sleep(min(SWEEP_INTERVAL_S, max(ttl_s / 4, 1.0)))
