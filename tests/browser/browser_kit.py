"""Helpers for the browser tests: the real server in a thread, Chromium settings.

Chromium is Debian's (``/usr/bin/chromium``, or AETHERSCAN_CHROMIUM), driven by Playwright;
WebGL runs on SwiftShader, so no GPU is needed.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

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
