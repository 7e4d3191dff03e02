"""Server test kit: a real uvicorn server in a thread, clients for it, and a test engine.

``ScriptedEngine`` is a TEST DOUBLE, not an engine: it implements the Engine protocol with
deterministic synthetic geometry so that protocol tests run in a second. Each view's points are
coloured with the mean colour of its photo, so a test can tell whose photos a point came from.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from aetherscan.engines.base import EngineError, Observer, Photo
from aetherscan.photos import open_photo_array
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View
from aetherscan.server.app import create_app, server_config
from aetherscan.settings import Settings


@dataclass
class ScriptedEngine:
    """TEST DOUBLE for the Engine protocol (see the module docstring).

    ``gate``: when given, the engine waits for it after streaming the first view (while still
    calling the observer, so that cancellation is noticed), to test what happens mid-job.
    ``stream``: when False it never calls observer.points (an engine that only returns a result).
    ``quality``: the verdict it gives (by default none: the result is unchecked). ``masks``
    records, per call, each photo's mask file as bytes (None: no mask); the result's ``masks``
    is "given" when a photo had one.
    Photos named ``fail*`` make it fail; photos named ``drop*`` are left out of the result.
    """

    points_per_view: int = 1200
    delay_s: float = 0.01
    stream: bool = True
    gate: threading.Event | None = None
    name: str = "scripted"
    quality: Quality | None = None
    calls: list[list[str]] = field(default_factory=list)
    masks: list[dict[str, bytes | None]] = field(default_factory=list)

    def reconstruct(
        self, photos: Sequence[Photo], observer: Observer | None = None
    ) -> Reconstruction:
        observer = observer or Observer()
        self.calls.append([photo.name for photo in photos])
        self.masks.append(
            {p.name: p.mask_path.read_bytes() if p.mask_path else None for p in photos}
        )
        if len(photos) < 2:
            raise EngineError("the scripted engine needs 2 photos")
        views, dropped = [], []
        for photo in photos:
            if photo.name.startswith("drop"):
                dropped.append(DroppedPhoto(photo.name, "it was scripted to be dropped"))
        kept = [photo for photo in photos if not photo.name.startswith("drop")]
        for index, photo in enumerate(kept):
            if photo.name.startswith("fail"):
                raise EngineError(f"{photo.name} was scripted to fail")
            view = self._view(index, photo)
            views.append(view)
            observer.progress("mapping", (index + 1) / len(photos), f"view {index + 1}")
            if self.stream:
                count = len(view.points)
                observer.points(
                    PointCloud(
                        view.points, view.colors, view.confidence, np.full(count, index, np.int32)
                    )
                )
            time.sleep(self.delay_s)
            while index == 0 and self.gate is not None and not self.gate.wait(0.02):
                observer.progress("mapping", 1 / len(photos), "waiting at the gate")
        observer.progress("done", 1.0, "")
        result = Reconstruction(engine=self.name, views=views, dropped=dropped)
        if self.quality is not None:
            result.quality = self.quality
        result.masks = "given" if any(self.masks[-1].values()) else "none"
        return result

    def _view(self, index: int, photo: Photo) -> View:
        pixels = open_photo_array(photo.path)
        height, width = pixels.shape[:2]
        rng = np.random.default_rng(index)
        n = self.points_per_view
        points = (rng.normal(size=(n, 3)) + np.array([index, 0, 4])).astype(np.float32)
        colors = np.tile(pixels.reshape(-1, 3).mean(axis=0).round().astype(np.uint8), (n, 1))
        K = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], float)
        pose = np.eye(4)
        pose[0, 3] = -index
        confidence = (1 + rng.permutation(n) * 9 / n).astype(np.float32)  # distinct values
        return View(photo.name, width, height, K, pose, points, colors, confidence)


def photo_bytes(color=(200, 30, 30), size=(64, 48), fmt="JPEG", mode="RGB") -> bytes:
    """A small solid-colour photo; the colour survives JPEG well enough to identify it."""
    image = Image.new("RGB", size, color)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def png(width: int, height: int, depth: int = 8, color_type: int = 2, raw: bytes = b"") -> bytes:
    """A PNG written by hand, so that its header can claim any size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _mode(mode: str, fmt: str = "PNG") -> bytes:
    base = Image.new("RGB", (40, 30), (120, 60, 200))
    if mode == "I;16":
        converted = Image.fromarray(np.full((30, 40), 40000, np.uint16))
    elif mode == "P":
        converted = base.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        converted = base.convert(mode)
    buffer = io.BytesIO()
    converted.save(buffer, fmt)
    return buffer.getvalue()


def odd_but_valid_photos() -> dict[str, bytes]:
    """Photos in pixel modes and formats that must work: grayscale, CMYK, 16-bit, palette,
    alpha, and the formats besides JPEG and PNG."""
    return {
        "grayscale.png": _mode("L"),
        "cmyk.jpg": _mode("CMYK", "JPEG"),
        "sixteen.png": _mode("I;16"),
        "palette.png": _mode("P"),
        "alpha.png": _mode("RGBA"),
        "la.png": _mode("LA"),
        "photo.webp": _mode("RGB", "WEBP"),
        "photo.bmp": _mode("RGB", "BMP"),
        "photo.tif": _mode("RGB", "TIFF"),
    }


def mask_bytes(size=(64, 48), fmt="PNG", subject=(16, 12, 48, 36)) -> bytes:
    """A mask: black (ignore) around a white rectangle (the subject), by default of the size
    of photo_bytes' photos."""
    image = Image.new("L", size, 0)
    image.paste(255, subject)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class RunningServer:
    """The app on uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings, engine, **options) -> None:
        """``options``: more uvicorn options, over those of server_config."""
        self.settings = settings
        self.engine = engine
        config = server_config(
            create_app(settings, engine),
            settings,
            **{"host": "127.0.0.1", "port": 0, "log_level": "warning", **options},
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20)
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(20)

    def app_tasks(self) -> int:
        """The requests and WebSocket sessions the app is still running."""
        return len(self._server.server_state.tasks)

    def connect(self, headers: dict[str, str] | None = None) -> Client:
        return Client(f"ws://127.0.0.1:{self.port}/ws", headers)

    def wait_for_state(self, job_id: str, states=("done", "failed", "cancelled"), timeout_s=20):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.http.get(f"/api/jobs/{job_id}").json()
            if status.get("state") in states:
                return status
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not reach {states}: {status}")


class Client:
    """A WebSocket client that speaks JSON and keeps the raw text of each message."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self._opened = connect(url, max_size=None, open_timeout=10, additional_headers=headers)
        self.connection: ClientConnection = self._opened.__enter__()
        self.raw: list[str | bytes] = []

    def send(self, message: dict | str) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def receive(self, timeout_s: float = 20) -> dict | bytes:
        raw = self.connection.recv(timeout=timeout_s)
        self.raw.append(raw)
        return raw if isinstance(raw, bytes) else json.loads(raw)

    def receive_until(self, kind: str, timeout_s: float = 20) -> list[dict | bytes]:
        """Messages up to and including the first of type ``kind``."""
        messages = []
        while True:
            message = self.receive(timeout_s)
            messages.append(message)
            if isinstance(message, dict) and message["type"] == kind:
                return messages

    def upload(self, photos: dict[str, bytes]) -> list[dict]:
        replies = []
        for name, data in photos.items():
            self.send({"type": "image_data", "data": data_url(data), "filename": name})
            replies.append(self.receive())
        return replies

    def send_mask(self, photo: str, data: bytes) -> dict:
        """Send the mask of a photo already sent (extension 'masks'); the server's answer."""
        self.send({"type": "mask_data", "photo": photo, "data": data_url(data, "image/png")})
        return self.receive()

    def close(self) -> None:
        self._opened.__exit__(None, None, None)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_settings(data_dir: Path, **overrides) -> Settings:
    overrides.setdefault("web_dir", data_dir / "no-web")
    return Settings(data_dir=data_dir, **overrides)


class RawWebSocket:
    """A WebSocket client on a bare socket, for what well-behaved clients never do: stop in the
    middle of a frame, never read, vanish without a close frame."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so that the window stays small
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(10)
        self.socket.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        self.socket.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += self.socket.recv(1)
        assert reply.startswith(b"HTTP/1.1 101"), reply

    @staticmethod
    def frame(payload: bytes, opcode: int = 0x1) -> bytes:
        """One final, masked frame (clients must mask)."""
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), length)
        return header + mask + masked.tobytes()

    def send(self, message: dict | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.socket.sendall(self.frame(text.encode()))

    def receive_frames(self, last, chunk_bytes: int = 65536) -> list[tuple[int, bytes]]:
        """The server's frames (opcode, payload), unmasked as servers send them, up to and
        including the first one for which ``last(opcode, payload)`` is true."""
        data, frames = b"", []
        while not frames or not last(*frames[-1]):
            chunk = self.socket.recv(chunk_bytes)
            assert chunk, "the connection ended before the awaited frame"
            data += chunk
            while len(data) >= 2 and not (frames and last(*frames[-1])):
                opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
                if length == 126:
                    length, start = int.from_bytes(data[2:4], "big"), 4
                elif length == 127:
                    length, start = int.from_bytes(data[2:10], "big"), 10
                if len(data) < start + length:
                    break
                frames.append((opcode, data[start : start + length]))
                data = data[start + length :]
        return frames

    def close(self) -> None:
        self.socket.close()
