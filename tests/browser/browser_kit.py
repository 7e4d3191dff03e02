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


class LiveServer:
    """The AetherScan app (``create_app``) on uvicorn in a thread; stop() and start() again
    on the same port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        import uvicorn

        from aetherscan.server.app import create_app, server_config
        from aetherscan.settings import Settings

        # The engine is the server's own choice (AETHERSCAN_ENGINE, default auto), as for a user.
        settings = Settings(host="127.0.0.1", port=self.port, data_dir=self.data_dir)
        config = server_config(create_app(settings), settings, log_level="warning")
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
