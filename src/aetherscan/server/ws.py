"""The WebSocket at /ws: one Session per connection (docs/protocol.md).

A session reads messages and answers control messages (ping, hello, attach, cancel) at once;
photos, their masks and upload_complete go, in order, through a queue to a task of their own, so
that decoding a big photo never delays a pong. The events of the session's job come through the
job's feed (aetherscan.server.feeds), which another task forwards to the socket. One lock
serialises sends; each waits at most idle_timeout_s for a client that stopped reading, after
which the session ends.

Nothing a client sends ends its session: a message that cannot be used, a photo that the data
folder cannot take (full, read-only) and a failure of the server's own are each answered with an
error, and what was received before stays. When a session ends, its unfinished job is cancelled,
unless the client opted into ``attach``: then the job waits reattach_grace_s for the client to
attach to it again from a new connection. Sessions per client and in all are limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from aetherscan.engines.base import JobOptions, Preview, PreviewCamera, job_options
from aetherscan.reconstruction import PointCloud, View, load_reconstruction
from aetherscan.server.feeds import FeedReader, JobFeed, Sessions, sessions_of
from aetherscan.server.incoming_video import IncomingVideo
from aetherscan.server.jobs import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    Job,
    JobEvent,
    PointsEvent,
    PreviewEvent,
    ProgressEvent,
    QueuedEvent,
    RestartedEvent,
)
from aetherscan.server.protocol import (
    FEATURES,
    PROTOCOL_VERSION,
    Attach,
    Attached,
    BadMessage,
    Camera,
    Cameras,
    CancelledMessage,
    DroppedInfo,
    ErrorMessage,
    Hello,
    ImageData,
    ImageReceived,
    MaskData,
    MaskReceived,
    Ping,
    Pong,
    PreviewMessage,
    PreviewPoints,
    Progress,
    QualityInfo,
    Queued,
    ReconstructionComplete,
    Restarted,
    UploadComplete,
    VideoData,
    VideoReceived,
    Welcome,
    encode_points,
    parse_client_message,
)
from aetherscan.server.results import RECONSTRUCTION_FILE, download_urls
from aetherscan.server.service import Service, ServiceDep, client_of
from aetherscan.server.storage import PhotoRecord, StorageError
from aetherscan.server.uploads import MAX_LABEL_CHARS, MB, Refused, decode_data_url, name_within

log = logging.getLogger(__name__)
router = APIRouter()

PENDING_UPLOADS = 2  # messages waiting for the upload task; then the reader waits (back-pressure)
PARSE_IN_THREAD_CHARS = 1 << 20  # parse big messages off the event loop
LONGEST_FILENAME = 1024  # characters of a client's filename that make its label (of 120)
REFUSED_CLOSE_CODE = 1013  # "try again later": a session over a limit
UNFINISHED = ("uploading", "queued", "running")
CANCELLED = "cancelled by the client"
UPLOAD_CANCELLED = "the upload was cancelled by the client and its photos removed"
DISCONNECTED = "the client disconnected"
STOPPED_READING = "the client stopped reading"
NO_JOB = (
    "there is no job with this id that this client can attach to (it may have expired or been "
    "deleted; a job can be attached to only by the client that made it)"
)
INTERNAL = "the server failed while {}; this is a bug of the server, and the session goes on"

T = TypeVar("T")


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, service: ServiceDep) -> None:
    sessions = sessions_of(websocket.app.state, service.settings, service)
    client = client_of(websocket)
    await websocket.accept()
    refusal = sessions.admit(client)
    if refusal is not None:
        await _refuse(websocket, *refusal, timeout_s=service.settings.idle_timeout_s)
        return
    try:
        await Session(websocket, service, sessions).run()
    finally:
        sessions.leave(client)


async def _refuse(websocket: WebSocket, sentence: str, reason: str, timeout_s: float) -> None:
    """An error that says why, then a close frame (1013, try again later) with a short reason."""
    with contextlib.suppress(Exception):
        error = ErrorMessage(message=sentence, code=None)  # before hello: no code
        await asyncio.wait_for(websocket.send_text(error.to_json()), timeout_s)
        await asyncio.wait_for(websocket.close(REFUSED_CLOSE_CODE, reason), timeout_s)


class SessionClosed(Exception):
    """The socket cannot be written to any more."""


class Session:
    def __init__(self, websocket: WebSocket, service: Service, sessions: Sessions) -> None:
        self.ws, self.service, self.sessions = websocket, service, sessions
        self.settings = service.settings
        self.client = client_of(websocket)
        self.features: set[str] = set()
        self.said_hello = False
        self.job: Job | None = None  # the unfinished job this connection uploads to or follows
        self._uploads: asyncio.Queue[ImageData | MaskData | VideoData | UploadComplete] = (
            asyncio.Queue(PENDING_UPLOADS)
        )
        self._video: IncomingVideo | None = None  # a video arriving in pieces (feature video)
        self._refused_video: str | None = None  # a video refused: its later pieces are dropped
        self._uploading = False
        self._replaying = False  # sending a finished job's stored result (attach)
        self._send_lock = asyncio.Lock()
        self._forwarders: dict[str, asyncio.Task] = {}  # job id -> the task sending its stream
        self._background: set[asyncio.Task] = set()
        self._cancelling = False
        self._closed = asyncio.Event()  # set when a send fails: the session is over
        self._leave_reason = DISCONNECTED

    async def run(self) -> None:
        """Read until the client goes, or until a send fails in any task: the reader may then
        be waiting for room in the upload queue of an uploader that is gone."""
        uploader = asyncio.create_task(self._process_uploads())
        reader = asyncio.create_task(self._read())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait((reader, closed), return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled():
                with contextlib.suppress(SessionClosed):
                    reader.result()
        except Exception:
            log.exception("a WebSocket session failed")
        finally:
            tasks = (reader, closed, uploader, *self._forwarders.values(), *self._background)
            for task in tasks:
                task.cancel()
            self._drop_video()  # a video cut off mid-way: its pieces go
            self._leave(self._leave_reason)
            await self._close()

    def _leave(self, reason: str) -> None:
        """The session is over: its unfinished job is cancelled, or with ``attach`` waits for
        its client to come back."""
        job, self.job = self.job, None
        if job is None or job.state not in UNFINISHED:
            return
        feed = self.sessions.feed_of(job.id)
        if feed is not None:
            self.sessions.unfollow(feed, self)
        grace_s = self.settings.reattach_grace_s
        if feed is None or "attach" not in self.features or grace_s <= 0:
            self.service.jobs.cancel(job, reason)
            return
        jobs = self.service.jobs
        later = f"{reason} and did not attach again within {grace_s:g} s (setting reattach_grace_s)"
        self.sessions.wait_for_return(job.id, lambda: jobs.cancel(job, later))

    def lose(self, job_id: str) -> None:
        """Another session of this client attached to the job: this one stops following it."""
        if self.job is not None and self.job.id == job_id:
            self.job = None
        forwarder = self._forwarders.pop(job_id, None)
        if forwarder is not None:
            forwarder.cancel()
        self._in_background(
            self.send_error(
                "another connection of this client attached to this connection's job; this "
                "connection no longer follows it",
                "attach",
            )
        )

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(SessionClosed):
                await coroutine

        task = asyncio.create_task(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # Reading -----------------------------------------------------------------------------------

    async def _read(self) -> None:
        idle_s = self.settings.idle_timeout_s
        max_chars = self.settings.max_message_mb * MB
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle_s)
            except TimeoutError:
                if self._busy():
                    continue
                await self.send_error(
                    f"closing the connection after {idle_s:g} s without a message "
                    "(setting idle_timeout_s)",
                    "timeout",
                )
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.send_error(
                    "binary messages are not understood by the server; send JSON text messages",
                    "bad_message",
                )
                continue
            if len(text) > max_chars:
                await self.send_error(
                    f"the message has {len(text) / MB:.1f} MB, more than the limit of "
                    f"{self.settings.max_message_mb:g} MB (setting max_message_mb)",
                    "limit",
                )
                continue
            try:
                if len(text) > PARSE_IN_THREAD_CHARS:
                    parsed = await asyncio.to_thread(parse_client_message, text)
                else:
                    parsed = parse_client_message(text)
            except BadMessage as exc:
                await self.send_error(str(exc), "bad_message")
                continue
            except Exception:  # the parser must refuse in words; this is a bug to log
                log.exception("a client message could not be parsed")
                await self.send_error(INTERNAL.format("reading this message"), "bad_message")
                continue
            if isinstance(parsed, Ping):
                await self.send(Pong().to_json())
            elif isinstance(parsed, Hello):
                await self._hello(parsed)
            elif isinstance(parsed, Attach):
                await self._attach(parsed)
            elif isinstance(parsed, ImageData | MaskData | VideoData | UploadComplete):
                await self._uploads.put(parsed)
            else:
                await self._cancel()

    def _busy(self) -> bool:
        """Whether the client is legitimately silent: waiting for its job or its uploads."""
        waiting = self.job is not None and self.job.state in ("queued", "running")
        return waiting or self._replaying or self._uploading or not self._uploads.empty()

    async def _hello(self, hello: Hello) -> None:
        if hello.protocol != PROTOCOL_VERSION:
            await self.send_error(
                f"protocol version {hello.protocol} is not supported; this server speaks "
                f"version {PROTOCOL_VERSION}, which this connection now uses",
                "bad_message",
            )
        self.said_hello = True
        self.features = {feature for feature in hello.features if feature in FEATURES}
        welcome = Welcome(
            engine=self.service.engine.name,
            features=[feature for feature in FEATURES if feature in self.features],
            limits=self.service.limits(),
            reattach_grace_s=self.settings.reattach_grace_s if "attach" in self.features else None,
            job_options=job_options(self.service.engine) if "options" in self.features else None,
        )
        await self.send(welcome.to_json())

    async def _cancel(self) -> None:
        while not self._uploads.empty():  # photos not looked at yet are dropped too
            self._uploads.get_nowait()
        self._drop_video()  # and a video still arriving: the next upload starts afresh
        self._refused_video = None
        job = self.job
        if job is None:
            await self.send(CancelledMessage(message="there was nothing to cancel").to_json())
            return
        # The forwarder answers when the job has stopped: at once unless it is running.
        self._cancelling = True
        reason = UPLOAD_CANCELLED if job.state == "uploading" else CANCELLED
        self.service.jobs.cancel(job, reason)

    # Attaching to a job again ------------------------------------------------------------------

    async def _attach(self, message: Attach) -> None:
        """Follow a job of this client from the start of its stream: an open job through its
        feed (then live), a finished one from its stored result."""
        if "attach" not in self.features:
            await self.send_error(
                'attach is an extension: send {"type":"hello","features":["attach"]} first',
                "bad_message",
            )
            return
        if self.job is not None or self._replaying:
            await self.send_error(
                "this connection already has a job (an upload, a job queued or running, or a "
                "result being sent); cancel it or wait for its end before attaching",
                "attach",
            )
            return
        job = self.service.jobs.get_open(message.job_id)
        if job is not None:
            feed = self.sessions.feed_of(job.id)
            if job.client != self.client or feed is None:  # another's, or made over REST
                await self.send_error(NO_JOB, "attach")
                return
            self.job = job
            self.sessions.follow(feed, self)
            photos = [photo.label for photo in job.photos]
            await self.send(Attached(job_id=job.id, state=job.state, photos=photos).to_json())  # type: ignore[arg-type]
            self._forward(feed)
            return
        storage = self.service.storage
        try:
            record = storage.get(message.job_id)
            photos = [p.label for p in storage.photos(record.id)] if record is not None else []
        except (StorageError, OSError, sqlite3.Error):
            log.exception("the index could not be read")
            await self.send_error("the server could not read its index; try again later", "storage")
            return
        if record is None or record.client != self.client or record.state in UNFINISHED:
            await self.send_error(NO_JOB, "attach")
            return
        attached = Attached(job_id=record.id, state=record.state, photos=photos)  # type: ignore[arg-type]
        await self.send(attached.to_json())
        if record.state == "done":
            self._replaying = True
            self._start_forwarder(record.id, self._replay_result(record.id))
        elif record.state == "failed":
            await self.send_error(f"the reconstruction failed: {record.error}", "job_failed")
        else:
            reason = record.error or "the job was cancelled"
            await self.send(CancelledMessage(message=reason).to_json())

    async def _replay_result(self, job_id: str) -> None:
        """The stored result of a finished job, as its stream would have ended."""
        storage = self.service.storage
        release = storage.hold(job_id)  # a delete meanwhile waits for the file to be read
        try:
            path = storage.result_dir(job_id) / RECONSTRUCTION_FILE
            reconstruction = await asyncio.to_thread(load_reconstruction, path)
            downloads = download_urls(job_id, storage.result_dir(job_id))
        except Exception:
            log.exception("the result of job %s could not be read", job_id)
            self._replaying = False
            await self.send_error(
                "the result of this job could not be read (it may have been deleted meanwhile)",
                "job_failed",
            )
            return
        finally:
            release()
        events: list[JobEvent] = [
            PointsEvent(reconstruction.view_cloud(index))
            for index, view in enumerate(reconstruction.views)
            if len(view.points)
        ]
        events.append(DoneEvent(reconstruction, downloads))
        await self._send_stream(JobFeed(job_id, events).reader())

    # Photos and upload_complete ----------------------------------------------------------------

    async def _process_uploads(self) -> None:
        with contextlib.suppress(SessionClosed):
            while True:
                message = await self._uploads.get()
                self._uploading = True
                try:
                    if isinstance(message, ImageData):
                        await self._receive_image(message)
                    elif isinstance(message, MaskData):
                        await self._receive_mask(message)
                    elif isinstance(message, VideoData):
                        await self._receive_video(message)
                    else:
                        await self._complete(message)
                except (SessionClosed, asyncio.CancelledError):
                    raise
                except Exception:  # a bug must not stop the uploads: later photos still count
                    log.exception("a WebSocket upload message failed")
                    await self.send_error(
                        INTERNAL.format(f"handling this {message.type} message"), "upload"
                    )
                finally:
                    self._uploading = False

    def _open_job(self) -> Job:
        job = self.service.jobs.open_job(self.client, "ws")
        self.job = job
        feed = self.sessions.feed_for(job)
        self.sessions.follow(feed, self)
        self._forward(feed)
        return job

    async def _receive_image(self, message: ImageData) -> None:
        jobs = self.service.jobs
        if self._replaying or (self.job is not None and self.job.state != "uploading"):
            await self._refuse_busy()
            return
        filename = name_within(message.filename, LONGEST_FILENAME)
        job = self.job
        try:
            if job is None:
                job = self._open_job()
            label = jobs.photo_label(job, filename)
            # The size check before decoding: base64 has 4 characters for 3 bytes.
            jobs.check_photo_size(job, label, len(message.data) * 3 // 4)
            data = await asyncio.to_thread(decode_data_url, message.data, label)
            photo = await _to_the_end(jobs.add_photo(job, filename, data))
        except Refused as exc:
            await self.send_error(exc.message, exc.code)
            return
        except StorageError as exc:
            if job is None:  # the job could not even be made
                await self.send_error(f"the upload could not be started: {exc.message}", "storage")
                return
            await self._storage_refused(job, exc.message)
            return
        job_id = job.id if "attach" in self.features else None
        await self.send(ImageReceived(filename=photo.label, job_id=job_id).to_json())

    async def _receive_video(self, message: VideoData) -> None:
        """A piece of a video; after the last, its frames, each answered as a photo."""
        if "video" not in self.features:
            await self.send_error(
                "video_data needs the feature video (send hello with it first)", "bad_message"
            )
            return
        if self._replaying or (self.job is not None and self.job.state != "uploading"):
            await self._refuse_busy()
            return
        label = name_within(message.filename, LONGEST_FILENAME)
        if self._refused_video == label:  # the rest of a video refused already: dropped
            if message.last:
                self._refused_video = None
            return
        video = self._video
        if video is not None and video.label != label:
            await self.send_error(
                f"{label}: the video {video.label} is still arriving; send its last piece "
                "first (one video at a time)",
                "upload",
            )
            return
        try:
            if video is None:
                video = self._video = IncomingVideo(
                    label, self.service.storage.temp_dir, self.settings.max_video_mb
                )
            data = await asyncio.to_thread(decode_data_url, message.data, label)
            await asyncio.to_thread(video.append, data)
        except (Refused, StorageError) as exc:
            self._drop_video()
            if not message.last:
                self._refused_video = label
            await self.send_error(exc.message, exc.code if isinstance(exc, Refused) else "storage")
            return
        except ValueError:  # its file was closed meanwhile: a cancel dropped the video
            if self._video is video:
                raise
            return
        if self._video is not video:
            return
        if message.last:
            await self._take_frames(video)

    async def _take_frames(self, video: IncomingVideo) -> None:
        jobs = self.service.jobs
        added: list[PhotoRecord] = []
        try:
            path = await asyncio.to_thread(video.finish)
            job = self.job or self._open_job()
            added, sampled = await _to_the_end(jobs.add_video(job, video.label, path))
        except Refused as exc:
            added = getattr(exc, "added", [])
            await self._frames_received(added)
            await self.send_error(exc.message, exc.code)
            return
        except StorageError as exc:
            if self.job is None:
                await self.send_error(f"the upload could not be started: {exc.message}", "storage")
            else:
                await self._storage_refused(self.job, exc.message)
            return
        finally:
            self._drop_video()
        await self._frames_received(added)
        reply = VideoReceived(
            filename=video.label,
            frames=[photo.label for photo in added],
            duration_s=round(sampled.duration_s, 3),
            notes=sampled.notes,
        )
        await self.send(reply.to_json())

    async def _frames_received(self, frames: list[PhotoRecord]) -> None:
        job_id = self.job.id if self.job is not None and "attach" in self.features else None
        for photo in frames:
            await self.send(ImageReceived(filename=photo.label, job_id=job_id).to_json())

    def _drop_video(self) -> None:
        if self._video is not None:
            self._video.discard()
            self._video = None

    async def _storage_refused(self, job: Job, problem: str) -> None:
        """A photo the data folder refused: the photos before it stay. A job without any is
        given up, so that it holds no slot of its client."""
        kept = len(job.photos)
        if kept == 0 and self.job is job:
            self._stop_following(job)
            self.service.jobs.discard(job, problem)
            then = "nothing was kept"
        else:
            then = f"{kept} photo{' was' if kept == 1 else 's were'} received before and kept"
        await self.send_error(f"{problem}; {then}", "storage")

    async def _receive_mask(self, message: MaskData) -> None:
        """The mask of a photo received before; a refused mask leaves the photo, maskless."""
        if "masks" not in self.features:
            await self.send_error(
                'mask_data is an extension: send {"type":"hello","features":["masks"]} first',
                "bad_message",
            )
            return
        jobs = self.service.jobs
        job = self.job
        if self._replaying or (job is not None and job.state != "uploading"):
            await self._refuse_busy()
            return
        try:
            # A name longer than any label names no photo; it is not quoted back whole.
            photo = jobs.photo_named(job, message.photo[: MAX_LABEL_CHARS + 1])
            assert job is not None
            jobs.check_mask_size(job, photo, len(message.data) * 3 // 4)
            label = f"{photo.label} (its mask)"
            data = await asyncio.to_thread(decode_data_url, message.data, label, "bad_mask")
            await _to_the_end(jobs.add_mask(job, photo, data))
        except Refused as exc:
            await self.send_error(exc.message, exc.code)
            return
        except StorageError as exc:
            await self.send_error(f"{exc.message}; the photo stays, without a mask", "storage")
            return
        await self.send(MaskReceived(photo=photo.label).to_json())

    async def _complete(self, message: UploadComplete) -> None:
        job = self.job
        if self._replaying or (job is not None and job.state != "uploading"):
            await self._refuse_busy()
            return
        received = len(job.photos) if job is not None else 0
        problem = None
        if received == 0:
            problem = "no photos were received before upload_complete; send at least 2 first"
        elif received == 1:
            problem = "a reconstruction needs at least 2 photos; 1 was received"
        elif message.count != received:
            problem = (
                f"upload_complete says {message.count} photos but {received} were received and "
                "kept (photos refused with an error are not counted); send the missing photos "
                f"and upload_complete again, or upload_complete with count {received} to "
                "reconstruct these"
            )
        options = JobOptions()
        if problem is None and "options" in self.features:
            try:
                options = JobOptions.from_json(message.options)
            except ValueError as exc:
                problem = f"{exc}; the photos are kept: send upload_complete again"
        if problem is not None:
            await self.send_error(problem, "upload")
            return
        assert job is not None
        try:
            self.service.jobs.submit(job, options)
        except Refused as exc:
            await self.send_error(exc.message, exc.code)
        except StorageError as exc:
            await self.send_error(
                f"the reconstruction could not be queued: {exc.message}; the {received} photos "
                "are kept: send upload_complete again later",
                "storage",
            )

    async def _refuse_busy(self) -> None:
        await self.send_error(
            "a reconstruction is already queued or running for this connection; wait for "
            "reconstruction_complete (or send cancel) before sending photos again",
            "upload",
        )

    # Forwarding the job's events ---------------------------------------------------------------

    def _forward(self, feed: JobFeed) -> None:
        """Send the feed's stream from its start, in a task of its own."""
        self._start_forwarder(feed.job_id, self._send_stream(feed.reader()))

    def _start_forwarder(self, job_id: str, stream: Coroutine[Any, Any, None]) -> None:
        async def forward() -> None:
            try:
                with contextlib.suppress(SessionClosed):
                    await stream
            except Exception:
                log.exception("the stream of job %s failed", job_id)
                with contextlib.suppress(SessionClosed):
                    await self.send_error(
                        INTERNAL.format("sending this job's stream"), "job_failed"
                    )

        task = asyncio.create_task(forward())
        self._forwarders[job_id] = task
        task.add_done_callback(lambda _: self._forget_forwarder(job_id, task))

    def _forget_forwarder(self, job_id: str, task: asyncio.Task) -> None:
        if self._forwarders.get(job_id) is task:
            del self._forwarders[job_id]

    def _stop_following(self, job: Job) -> None:
        """Stop sending the job's stream, without a word to the client."""
        forwarder = self._forwarders.pop(job.id, None)
        if forwarder is not None:
            forwarder.cancel()
        feed = self.sessions.feed_of(job.id)
        if feed is not None:
            self.sessions.unfollow(feed, self)
        if self.job is job:
            self.job = None

    async def _send_stream(self, reader: FeedReader) -> None:
        job_id = reader.feed.job_id
        sent = 0
        try:
            while True:
                event = await reader.next()
                sent += await self._send_event(job_id, event, sent)
                if isinstance(event, DoneEvent | FailedEvent | CancelledEvent):
                    return
                if isinstance(event, RestartedEvent) and "restart" not in self.features:
                    return
        finally:
            reader.close()

    async def _send_event(self, job_id: str, event: JobEvent, sent: int) -> int:
        """Send one event of the job's stream; the number of points it sent."""
        if isinstance(event, QueuedEvent) and "progress" in self.features:
            await self.send(Queued(position=event.position, job_id=self._job_id(job_id)).to_json())
        elif isinstance(event, ProgressEvent) and "progress" in self.features:
            progress = Progress(stage=event.stage, fraction=event.fraction, message=event.message)
            await self.send(progress.to_json())
        elif isinstance(event, PointsEvent):
            return await self._send_points(event.cloud)
        elif isinstance(event, PreviewEvent) and "preview" in self.features:
            preview = event.preview  # None: a newer preview replaced it meanwhile
            if preview is not None:
                await self.send(_preview_message(preview).to_json())
        elif isinstance(event, RestartedEvent):
            if "restart" in self.features:
                await self.send(Restarted(message=event.message).to_json())
                return -sent  # total_points counts the points of the new run only
            # A client that cannot drop what it has would mix two runs: its stream of the job
            # ends here, and the job goes on (REST has it).
            self._end(job_id)
            feed = self.sessions.feed_of(job_id)
            if feed is not None:
                self.sessions.unfollow(feed, self)
            await self.send_error(
                f"{event.message}; this connection cannot take its points again: follow the "
                "job over REST (GET /api/jobs/{id}), or with the feature restart",
                "job_restarted",
            )
        elif isinstance(event, DoneEvent):
            self._end(job_id)
            if "cameras" in self.features:
                await self.send(_cameras_message(event).to_json())
            result = event.reconstruction
            checked = "quality" in self.features
            complete = ReconstructionComplete(
                total_points=sent,
                job_id=self._job_id(job_id),
                downloads=event.downloads if "job" in self.features else None,
                quality=QualityInfo(**result.quality.to_json()) if checked else None,
                masks=result.masks if checked else None,  # type: ignore[arg-type]
            )
            await self.send(complete.to_json())
        elif isinstance(event, FailedEvent):
            self._end(job_id)
            await self.send_error(f"the reconstruction failed: {event.reason}", "job_failed")
        elif isinstance(event, CancelledEvent):
            self._end(job_id)
            if self.said_hello or self._cancelling:
                await self.send(CancelledMessage(message=event.reason).to_json())
            else:  # a client that does not know cancel learns it as an error
                await self.send_error(f"the reconstruction was cancelled: {event.reason}")
            self._cancelling = False
        return 0

    def _end(self, job_id: str) -> None:
        """The job is over: the connection may upload again."""
        if self.job is not None and self.job.id == job_id:
            self.job = None
        self._replaying = False

    def _job_id(self, job_id: str) -> str | None:
        return job_id if self.features & {"job", "attach"} else None

    async def _send_points(self, cloud: PointCloud) -> int:
        """Send a batch as JSON messages or binary frames; returns the number of points sent.
        Encoding runs in a thread: a million points take seconds of CPU that the event loop
        must not spend while other clients wait for a pong."""
        binary = "binary_points" in self.features
        messages, count = await asyncio.to_thread(encode_points, cloud, binary)
        for message in messages:
            await self.send(message)
        return count

    # Writing -----------------------------------------------------------------------------------

    async def send(self, payload: str | bytes) -> None:
        """Send one message, waiting at most idle_timeout_s for a client that does not read."""
        try:
            async with self._send_lock:
                if isinstance(payload, bytes):
                    coroutine = self.ws.send_bytes(payload)
                else:
                    coroutine = self.ws.send_text(payload)
                await asyncio.wait_for(coroutine, timeout=self.settings.idle_timeout_s)
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError) as exc:
            if not self._closed.is_set():
                self._leave_reason = (
                    STOPPED_READING if isinstance(exc, TimeoutError) else DISCONNECTED
                )
            self._closed.set()  # run() ends the session and leaves its job
            await self._close()
            raise SessionClosed from exc

    async def send_error(self, message: str, code: str | None = None) -> None:
        error = ErrorMessage(message=message, code=code if self.said_hello else None)  # type: ignore[arg-type]
        await self.send(error.to_json())

    async def _close(self) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close()


def _to_the_end(coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Await work that must not stop half way (a photo stored but not counted in its job) even
    when the session ends meanwhile: the session stops waiting, the work goes on to its end."""
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
    return asyncio.shield(task)


def _camera(camera: View | PreviewCamera) -> Camera:
    return Camera(
        name=camera.name,
        width=camera.width,
        height=camera.height,
        K=np.asarray(camera.K, float).tolist(),
        cam_from_world=np.asarray(camera.cam_from_world, float).tolist(),
    )


def _preview_message(preview: Preview) -> PreviewMessage:
    cloud = preview.cloud
    return PreviewMessage(
        message=preview.message,
        cameras=[_camera(camera) for camera in preview.cameras],
        points=PreviewPoints(
            # 6 significant digits: a preview is a look, not data.
            positions=[float(f"{v:.6g}") for v in cloud.xyz.ravel().tolist()],
            colors=cloud.rgb.ravel().tolist(),
        ),
    )


def _cameras_message(event: DoneEvent) -> Cameras:
    return Cameras(
        cameras=[_camera(view) for view in event.reconstruction.views],
        dropped=[DroppedInfo(name=d.name, reason=d.reason) for d in event.reconstruction.dropped],
    )
