"""Helpers for the browser tests: the real server in a thread, Chromium settings.

Chromium is Debian's (``/usr/bin/chromium``, or AETHERSCAN_CHROMIUM), driven by Playwright;
WebGL runs on SwiftShader, so no GPU is needed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOOK = "window.aetherscan"  # the page's hook for tests (docs/viewer.md)
SHOTS = Path(os.environ.get("AETHERSCAN_SHOTS", "/tmp/shots"))  # where tests leave screenshots
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-unsafe-swiftshader",
    "--use-gl=angle",
    "--use-angle=swiftshader",
]
# Counts what reaches the GPU: point data must be uploaded once, never again for a slider.
COUNT_GL_UPLOADS = """
window.__glUploads = {calls: 0, bytes: 0};
for (const Context of [WebGLRenderingContext, WebGL2RenderingContext]) {
  for (const name of ["bufferData", "bufferSubData"]) {
    const original = Context.prototype[name];
    Context.prototype[name] = function (target, data, ...rest) {
      window.__glUploads.calls += 1;
      if (data && data.byteLength !== undefined) window.__glUploads.bytes += data.byteLength;
      return original.call(this, target, data, ...rest);
    };
  }
}
"""


@contextmanager
def page_failing_on_errors(
    chromium, excused: Callable[[object], bool], *, count_gl_uploads: bool = False
) -> Iterator[object]:
    """A fresh 1280x800 page that fails the test, once it is done, on any uncaught script error
    and any console error but those ``excused`` (a Playwright console message -> bool) says the
    test brings about itself. ``count_gl_uploads``: the page counts its GL buffer uploads."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    if count_gl_uploads:
        context.add_init_script(COUNT_GL_UPLOADS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message) -> None:
        if message.type == "error" and not excused(message):
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", on_console)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def refused_socket(message) -> bool:
    """Chromium's own line for a refused WebSocket; the page's handling of it is tested."""
    return "WebSocket connection to" in message.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JudgedEngine:
    """TEST DOUBLE for the Engine protocol: a few points in front of each photo, and the verdict
    it was given (none: the result is unchecked), so the viewer's words for it can be tested
    without a real engine's minutes."""

    name = "judged"

    def __init__(self, quality=None, points_per_view: int = 400) -> None:
        self.quality = quality
        self.points_per_view = points_per_view

    def reconstruct(self, photos, observer=None):
        import numpy as np

        from aetherscan.engines.base import Observer
        from aetherscan.photos import read_size
        from aetherscan.reconstruction import Reconstruction, View

        observer = observer or Observer()
        views = []
        for index, photo in enumerate(photos):
            width, height = read_size(photo.path)
            rng = np.random.default_rng(index)
            n = self.points_per_view
            pose = np.eye(4)
            pose[0, 3] = -index
            views.append(
                View(
                    photo.name,
                    width,
                    height,
                    np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], float),
                    pose,
                    (rng.normal(size=(n, 3)) * 0.3 + [index, 0, 4]).astype(np.float32),
                    rng.integers(60, 255, (n, 3)).astype(np.uint8),
                    np.linspace(5, 1, n).astype(np.float32),
                )
            )
            observer.progress("mapping", (index + 1) / len(photos), f"view {index + 1}")
        result = Reconstruction(self.name, views)
        if self.quality is not None:
            result.quality = self.quality
        result.masks = "given" if any(p.mask_path for p in photos) else "none"
        return result


class LiveServer:
    """The AetherScan app (``create_app``) on uvicorn in a thread; stop() and start() again
    on the same port. ``engine``: an engine object instead of the server's own choice."""

    def __init__(self, data_dir: Path, port: int | None = None, engine=None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = engine
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        import uvicorn

        from aetherscan.server.app import create_app, server_config
        from aetherscan.settings import Settings

        # The engine is the server's own choice (AETHERSCAN_ENGINE, default auto), as for a user.
        settings = Settings(host="127.0.0.1", port=self.port, data_dir=self.data_dir)
        config = server_config(create_app(settings, self.engine), settings, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120  # the engine is built at start-up
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the AetherScan server stopped while starting (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError("the AetherScan server did not start within 120 s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None


def _require_server_app() -> None:
    try:
        import aetherscan.server.app  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("aetherscan.server"):
            pytest.skip("aetherscan.server.app does not exist yet: no server to test the viewer on")
        raise


def _require_three() -> None:
    web = Path(__file__).resolve().parents[2] / "web"
    if not (web / "node_modules" / "three" / "build" / "three.module.js").is_file():
        pytest.skip("three.js is not installed: run `cd web && npm install` (make install does)")


class PlacedEngine:
    """TEST DOUBLE for the Engine protocol: the cameras and points it is given, whatever the
    photos show, so that the view's tests know where every camera and point is. ``views``: one
    dict per view with ``cam_from_world`` (4x4, OpenCV axes), ``focal`` (in photo widths),
    ``points`` (N x 3), ``colors`` (N x 3, 0-255) and ``confidence`` (N); the photos sent give
    the names and sizes, in order (there must be at least as many as views). ``name``: the
    engine's name as the server reports it (``colmap`` for COLMAP's confidence words)."""

    def __init__(self, views: list[dict], name: str = "placed") -> None:
        self.views = views
        self.name = name

    def reconstruct(self, photos, observer=None):
        import numpy as np

        from aetherscan.engines.base import Observer
        from aetherscan.photos import read_size
        from aetherscan.reconstruction import Quality, Reconstruction, View

        observer = observer or Observer()
        views = []
        for index, (photo, spec) in enumerate(zip(photos, self.views, strict=False)):
            width, height = read_size(photo.path)
            focal = spec.get("focal", 1.0) * width
            views.append(
                View(
                    photo.name,
                    width,
                    height,
                    np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], float),
                    np.asarray(spec["cam_from_world"], float),
                    np.asarray(spec["points"], np.float32).reshape(-1, 3),
                    np.asarray(spec["colors"], np.uint8).reshape(-1, 3),
                    np.asarray(spec["confidence"], np.float32).reshape(-1),
                )
            )
            observer.progress("mapping", (index + 1) / len(self.views), f"view {index + 1}")
        result = Reconstruction(self.name, views)
        result.quality = Quality("good", [])
        return result


def look_at(centre, target, down_hint=(0.0, 1.0, 0.0)):
    """cam_from_world (4x4, OpenCV axes: x right, y down, z forward) of a camera at ``centre``
    looking at ``target``, its image's down as close to ``down_hint`` as can be."""
    import numpy as np

    centre = np.asarray(centre, float)
    forward = np.asarray(target, float) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(np.asarray(down_hint, float), forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = -rotation @ centre
    return pose


def solid_photos(folder: Path, colours, size=(96, 64)) -> list[str]:
    """One small JPEG of each colour in ``folder`` (photo1.jpg, photo2.jpg, ...): their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, colour in enumerate(colours):
        path = folder / f"photo{index + 1}.jpg"
        Image.new("RGB", size, tuple(colour)).save(path)
        paths.append(str(path))
    return paths


class StagedEngine(JudgedEngine):
    """TEST DOUBLE: JudgedEngine that leaves the photos named in ``dropped`` out of its result
    (each with its reason), reports its progress in ``steps`` even steps ``seconds_per_step``
    apart (so that the page's clock has something to measure), may wait at ``hold`` until the
    test sets it, and may say in its progress that it kept sparse points only."""

    name = "staged"

    def __init__(
        self,
        quality=None,
        dropped: dict[str, str] | None = None,
        steps: int = 2,
        seconds_per_step: float = 0.0,
        hold: threading.Event | None = None,
        sparse_only: bool = False,
        points_per_view: int = 400,
    ) -> None:
        super().__init__(quality, points_per_view)
        self.dropped = dropped or {}
        self.steps = steps
        self.seconds_per_step = seconds_per_step
        self.hold = hold
        self.sparse_only = sparse_only
        self.started = threading.Event()

    def reconstruct(self, photos, observer=None):
        from aetherscan.engines.base import Observer
        from aetherscan.reconstruction import DroppedPhoto

        observer = observer or Observer()
        observer.progress("load", 0.0, "the reconstruction started")
        self.started.set()
        if self.hold is not None:
            self.hold.wait(60)
        for step in range(1, self.steps + 1):
            time.sleep(self.seconds_per_step)
            observer.progress("mapping", 0.9 * step / self.steps, f"step {step}")
        kept = [photo for photo in photos if photo.name not in self.dropped]
        if self.sparse_only:
            observer.progress("points", 0.95, f"sparse points of {len(kept)} of {len(kept)} photos")
        result = super().reconstruct(kept, Observer())
        result.dropped = [
            DroppedPhoto(photo.name, self.dropped[photo.name])
            for photo in photos
            if photo.name in self.dropped
        ]
        return result


def write_test_photos(folder: Path, count: int, size: tuple[int, int] = (64, 48)) -> list[str]:
    """``count`` small JPEGs of different flat colours, photo1.jpg, photo2.jpg, ...: paths."""
    from PIL import Image

    paths = []
    for index in range(count):
        path = folder / f"photo{index + 1}.jpg"
        color = ((70 * index + 200) % 256, (110 * index + 60) % 256, (50 * index + 40) % 256)
        Image.new("RGB", size, color).save(path)
        paths.append(str(path))
    return paths
