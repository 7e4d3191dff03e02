"""The WebSocket at /ws: one Session per connection (docs/protocol.md).

A session reads messages and answers control messages (ping, hello, cancel) at once; photos, their
masks and upload_complete go, in order, through a queue to a task of their own, so that decoding a big photo
never delays a pong. A second task forwards the events of the session's job (queued, progress,
points, the end) to the socket. One lock serialises sends; each waits at most idle_timeout_s for a
client that stopped reading, after which the session ends and its job is cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging

import numpy as np
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from aetherscan.reconstruction import PointCloud
from aetherscan.server.jobs import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    Job,
    JobEvent,
    PointsEvent,
    ProgressEvent,
    QueuedEvent,
)
from aetherscan.server.protocol import (
    FEATURES,
    PROTOCOL_VERSION,
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
    Progress,
    QualityInfo,
    Queued,
    ReconstructionComplete,
    UploadComplete,
    Welcome,
    encode_points,
    parse_client_message,
)
from aetherscan.server.service import Service, ServiceDep, client_of
from aetherscan.server.uploads import MB, Refused

log = logging.getLogger(__name__)
router = APIRouter()

PENDING_UPLOADS = 2  # messages waiting for the upload task; then the reader waits (back-pressure)
PARSE_IN_THREAD_CHARS = 1 << 20  # parse big messages off the event loop
CANCELLED = "cancelled by the client"
UPLOAD_CANCELLED = "the upload was cancelled by the client and its photos removed"
DISCONNECTED = "the client disconnected"
STOPPED_READING = "the client stopped reading"


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, service: ServiceDep) -> None:
    await websocket.accept()
    await Session(websocket, service).run()


class SessionClosed(Exception):
    """The socket cannot be written to any more."""


class Session:
    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.ws, self.service = websocket, service
        self.settings = service.settings
        self.client = client_of(websocket)
        self.features: set[str] = set()
        self.said_hello = False
        self.job: Job | None = None
        self._uploads: asyncio.Queue[ImageData | MaskData | UploadComplete] = asyncio.Queue(
            PENDING_UPLOADS
        )
        self._uploading = False
        self._send_lock = asyncio.Lock()
        self._forwarder: asyncio.Task | None = None
        self._cancelling = False
        self._closed = asyncio.Event()  # set when a send fails: the session is over

    async def run(self) -> None:
        """Read until the client goes, or until a send fails in any task: the reader may then
        be waiting for room in the upload queue of an uploader that is gone."""
        uploader = asyncio.create_task(self._process_uploads())
        reader = asyncio.create_task(self._read())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait((reader, closed), return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                with contextlib.suppress(SessionClosed):
                    reader.result()
        finally:
            for task in (reader, closed, uploader, self._forwarder):
                if task is not None:
                    task.cancel()
            if self.job is not None and self.job.state in ("uploading", "queued", "running"):
                self.service.jobs.cancel(self.job, DISCONNECTED)
            await self._close()

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
            if isinstance(parsed, Ping):
                await self.send(Pong().to_json())
            elif isinstance(parsed, Hello):
                await self._hello(parsed)
            elif isinstance(parsed, ImageData | MaskData | UploadComplete):
                await self._uploads.put(parsed)
            else:
                await self._cancel()

    def _busy(self) -> bool:
        """Whether the client is legitimately silent: waiting for its job or its uploads."""
        waiting = self.job is not None and self.job.state in ("queued", "running")
        return waiting or self._uploading or not self._uploads.empty()

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
        )
        await self.send(welcome.to_json())

    async def _cancel(self) -> None:
        while not self._uploads.empty():  # photos not looked at yet are dropped too
            self._uploads.get_nowait()
        job = self.job
        if job is None:
            await self.send(CancelledMessage(message="there was nothing to cancel").to_json())
            return
        # The forwarder answers when the job has stopped: at once unless it is running.
        self._cancelling = True
        reason = UPLOAD_CANCELLED if job.state == "uploading" else CANCELLED
        self.service.jobs.cancel(job, reason)

    # Photos and upload_complete ----------------------------------------------------------------

    async def _process_uploads(self) -> None:
        with contextlib.suppress(SessionClosed):
            await self._process_uploads_until_closed()

    async def _process_uploads_until_closed(self) -> None:
        while True:
            message = await self._uploads.get()
            self._uploading = True
            try:
                if isinstance(message, ImageData):
                    await self._receive_image(message)
                elif isinstance(message, MaskData):
                    await self._receive_mask(message)
                else:
                    await self._complete(message)
            finally:
                self._uploading = False

    async def _receive_image(self, message: ImageData) -> None:
        jobs = self.service.jobs
        if self.job is not None and self.job.state != "uploading":
            await self._refuse_busy()
            return
        try:
            if self.job is None:
                self.job = jobs.open_job(self.client, "ws")
                self._listen(self.job)
            label = jobs.photo_label(self.job, message.filename)
            # The size check before decoding: base64 has 4 characters for 3 bytes.
            jobs.check_photo_size(self.job, label, len(message.data) * 3 // 4)
            data = await asyncio.to_thread(decode_data_url, message.data, label)
            photo = await jobs.add_photo(self.job, message.filename, data)
        except Refused as exc:
            await self.send_error(exc.message, exc.code)
            return
        await self.send(ImageReceived(filename=photo.label).to_json())

    async def _receive_mask(self, message: MaskData) -> None:
        """The mask of a photo received before; a refused mask leaves the photo, maskless."""
        if "masks" not in self.features:
            await self.send_error(
                'mask_data is an extension: send {"type":"hello","features":["masks"]} first',
                "bad_message",
            )
            return
        jobs = self.service.jobs
        if self.job is not None and self.job.state != "uploading":
            await self._refuse_busy()
            return
        try:
            photo = jobs.photo_named(self.job, message.photo)
            assert self.job is not None
            jobs.check_mask_size(self.job, photo, len(message.data) * 3 // 4)
            label = f"{photo.label} (its mask)"
            data = await asyncio.to_thread(decode_data_url, message.data, label, "bad_mask")
            await jobs.add_mask(self.job, photo, data)
        except Refused as exc:
            await self.send_error(exc.message, exc.code)
            return
        await self.send(MaskReceived(photo=photo.label).to_json())

    async def _complete(self, message: UploadComplete) -> None:
        job = self.job
        if job is not None and job.state != "uploading":
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
        if problem is not None:
            await self.send_error(problem, "upload")
            return
        assert job is not None
        try:
            self.service.jobs.submit(job)
        except Refused as exc:
            await self.send_error(exc.message, exc.code)

    async def _refuse_busy(self) -> None:
        await self.send_error(
            "a reconstruction is already queued or running for this connection; wait for "
            "reconstruction_complete (or send cancel) before sending photos again",
            "upload",
        )

    # Forwarding the job's events ---------------------------------------------------------------

    def _listen(self, job: Job) -> None:
        events = job.listen()
        self._forwarder = asyncio.create_task(self._forward(job, events))

    async def _forward(self, job: Job, events: asyncio.Queue[JobEvent]) -> None:
        sent = 0
        with contextlib.suppress(SessionClosed):
            while True:
                event = await events.get()
                if isinstance(event, QueuedEvent) and "progress" in self.features:
                    await self.send(
                        Queued(position=event.position, job_id=self._job_id(job)).to_json()
                    )
                elif isinstance(event, ProgressEvent) and "progress" in self.features:
                    progress = Progress(
                        stage=event.stage, fraction=event.fraction, message=event.message
                    )
                    await self.send(progress.to_json())
                elif isinstance(event, PointsEvent):
                    sent += await self._send_points(event.cloud)
                elif isinstance(event, DoneEvent):
                    self._end(job)
                    if "cameras" in self.features:
                        await self.send(_cameras_message(event).to_json())
                    result = event.reconstruction
                    checked = "quality" in self.features
                    complete = ReconstructionComplete(
                        total_points=sent,
                        job_id=self._job_id(job),
                        downloads=event.downloads if "job" in self.features else None,
                        quality=QualityInfo(**result.quality.to_json()) if checked else None,
                        masks=result.masks if checked else None,  # type: ignore[arg-type]
                    )
                    await self.send(complete.to_json())
                    return
                elif isinstance(event, FailedEvent):
                    self._end(job)
                    await self.send_error(
                        f"the reconstruction failed: {event.reason}", "job_failed"
                    )
                    return
                elif isinstance(event, CancelledEvent):
                    self._end(job)
                    if self.said_hello or self._cancelling:
                        await self.send(CancelledMessage(message=event.reason).to_json())
                    else:  # a client that does not know cancel learns it as an error
                        await self.send_error(f"the reconstruction was cancelled: {event.reason}")
                    self._cancelling = False
                    return

    def _end(self, job: Job) -> None:
        if self.job is job:
            self.job = None

    def _job_id(self, job: Job) -> str | None:
        return job.id if "job" in self.features else None

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
            self._closed.set()
            if self.job is not None:
                reason = STOPPED_READING if isinstance(exc, TimeoutError) else DISCONNECTED
                self.service.jobs.cancel(self.job, reason)
            await self._close()
            raise SessionClosed from exc

    async def send_error(self, message: str, code: str | None = None) -> None:
        error = ErrorMessage(message=message, code=code if self.said_hello else None)
        await self.send(error.to_json())

    async def _close(self) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close()


def decode_data_url(data: str, label: str, code: str = "bad_photo") -> bytes:
    """The bytes of a ``data:<type>;base64,<payload>`` URL, or Refused saying what is wrong."""
    header, comma, payload = data.partition(",")
    if not data.startswith("data:") or not comma or not header.endswith(";base64"):
        shown = data[:30] + ("..." if len(data) > 30 else "")
        raise Refused(
            f'{label}: "data" is not a base64 data URL (expected "data:image/jpeg;base64,...", '
            f"got {shown!r})",
            code=code,
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(
            f'{label}: the base64 in "data" is damaged or truncated ({exc})', code=code
        ) from None


def _cameras_message(event: DoneEvent) -> Cameras:
    return Cameras(
        cameras=[
            Camera(
                name=view.name,
                width=view.width,
                height=view.height,
                K=np.asarray(view.K, float).tolist(),
                cam_from_world=np.asarray(view.cam_from_world, float).tolist(),
            )
            for view in event.reconstruction.views
        ],
        dropped=[DroppedInfo(name=d.name, reason=d.reason) for d in event.reconstruction.dropped],
    )
