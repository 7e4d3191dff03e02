"""How fast computed points reach the screen: the real server and the viewer in headless Chromium.

An engine that computes nothing (its points are made before the clock starts) hands the server
``--points`` points in ``--batches`` batches, back to back, noting the wall-clock time of each
hand-over. The viewer (``?timing=1``: it reads a pixel back after each render, so "shown" means
drawn) notes when each point frame or JSON message reached the screen. Reported per mode:

* bytes per point on the WebSocket (binary frames, or the JSON "points" messages);
* first point: from the first batch handed over to its first points on screen;
* all points: from the last batch handed over (all points computed) to the last on screen.

Mode ``binary-no-browser`` is a plain Python WebSocket client instead of the page: the server's
part alone ("on screen" reads "received").

Goal (issue 5): binary frames at most 8 bytes a point, a million points on screen within 1.5 s.

    PYTHONPATH=src python benchmarks/bench_viewer.py --points 1000000 --batches 8 --repeats 3
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import PointCloud, Reconstruction, View

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted((REPO / "tests" / "fixtures" / "flowerpot").glob("*.jpg"))[:2]
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


def synthetic_cloud(num_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pot with a plant: positions, colours and heavy-tailed confidence."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 2 * np.pi, num_points)
    height = rng.uniform(0, 1, num_points)
    radius = 0.45 + 0.15 * (1 - height)
    pot = np.stack([radius * np.cos(theta), 0.8 - 0.9 * (1 - height), radius * np.sin(theta)], 1)
    direction = rng.normal(size=(num_points, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    plant = direction * rng.uniform(0.3, 0.55, (num_points, 1)) + [0.0, -0.5, 0.0]
    is_pot = rng.random(num_points) < 0.55
    xyz = np.where(is_pot[:, None], pot, plant) + np.array([0.0, 0.0, 3.0])
    shade = rng.uniform(0.75, 1.0, (num_points, 1))
    rgb = np.where(is_pot[:, None], [[190, 95, 55]], [[60, 150, 60]]) * shade
    confidence = 1.0 + rng.lognormal(1.0, 0.8, num_points)
    return xyz.astype(np.float32), rgb.astype(np.uint8), confidence.astype(np.float32)


class PrecomputedEngine:
    """Hands over points made in advance, as fast as the server takes them."""

    name = "benchmark"

    def __init__(self, num_points: int, batches: int) -> None:
        xyz, rgb, confidence = synthetic_cloud(num_points)
        bounds = np.linspace(0, num_points, batches + 1).astype(int)
        self.views = [
            View(
                name=f"view{i}",
                width=640,
                height=480,
                K=np.array([[560.0, 0, 320], [0, 560, 240], [0, 0, 1]]),
                cam_from_world=np.eye(4),
                points=xyz[a:b],
                colors=rgb[a:b],
                confidence=confidence[a:b],
            )
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ]
        self.handed_over_s: list[float] = []

    def reconstruct(
        self, photos: Sequence[Photo], observer: Observer | None = None
    ) -> Reconstruction:
        self.handed_over_s = []
        for index, view in enumerate(self.views):
            batch = PointCloud(
                view.points,
                view.colors,
                view.confidence,
                np.full(len(view.points), index, np.int32),
            )
            self.handed_over_s.append(time.time())
            if observer is not None:
                observer.points(batch)
        return Reconstruction(engine=self.name, views=self.views)


def start_server(engine: PrecomputedEngine, data_dir: Path):
    import uvicorn

    from aetherscan.server.app import create_app, server_config
    from aetherscan.settings import Settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir)
    server = uvicorn.Server(
        server_config(create_app(settings, engine=engine), settings, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def run_once(browser, url: str, mode: str, engine: PrecomputedEngine) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{url}/?timing=1&points={mode}")
        page.wait_for_function("() => window.aetherscan && window.aetherscan.state === 'idle'")
        page.set_input_files("#file-input", [str(p) for p in PHOTOS])
        page.click("#start")
        page.wait_for_function(
            "() => ['done', 'failed'].includes(window.aetherscan.state)", timeout=600_000
        )
        # The last frame's render may come just after reconstruction_complete.
        page.wait_for_function(
            "() => window.aetherscan.app.frameLog.every((f) => f.shownMs !== null)"
        )
        app = page.evaluate(
            "() => ({state: window.aetherscan.state, points: window.aetherscan.pointsReceived,"
            " drawn: window.aetherscan.pointsDrawn, bytes: window.aetherscan.app.bytesReceived,"
            " log: window.aetherscan.app.frameLog})"
        )
    finally:
        page.close()
    if app["state"] != "done":
        raise RuntimeError(f"the job did not finish: {app}")
    shown_ms = [entry["shownMs"] for entry in app["log"]]
    return {
        "mode": mode,
        "points": app["points"],
        "drawn": app["drawn"],
        "messages": len(shown_ms),
        "bytes_per_point": app["bytes"] / app["points"],
        "first_point_s": min(shown_ms) / 1000 - engine.handed_over_s[0],
        "all_points_s": max(shown_ms) / 1000 - engine.handed_over_s[-1],
    }


def run_without_browser(url: str, engine: PrecomputedEngine) -> dict:
    """The server's part: a Python client opts into binary frames and times their arrival."""
    from websockets.sync.client import connect

    with connect(url.replace("http", "ws", 1) + "/ws", max_size=None) as socket:
        features = ["progress", "cameras", "job", "binary_points"]
        socket.send(json.dumps({"type": "hello", "protocol": 1, "features": features}))
        for photo in PHOTOS:
            data = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()
            socket.send(json.dumps({"type": "image_data", "data": data, "filename": photo.name}))
        socket.send(json.dumps({"type": "upload_complete", "count": len(PHOTOS)}))
        arrivals, sizes = [], []
        while True:
            message = socket.recv(timeout=600)
            if isinstance(message, bytes):
                arrivals.append(time.time())
                sizes.append(len(message))
                continue
            kind = json.loads(message)["type"]
            if kind == "error":
                raise RuntimeError(message)
            if kind == "reconstruction_complete":
                break
    points = sum(len(view.points) for view in engine.views)
    return {
        "mode": "binary-no-browser",
        "points": points,
        "drawn": 0,
        "messages": len(arrivals),
        "bytes_per_point": sum(sizes) / points,
        "first_point_s": arrivals[0] - engine.handed_over_s[0],
        "all_points_s": arrivals[-1] - engine.handed_over_s[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=8, help="hand-overs (views) of points")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["binary", "json", "binary-no-browser"],
        default=["binary-no-browser", "binary", "json"],
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    engine = PrecomputedEngine(args.points, args.batches)
    results = []
    with tempfile.TemporaryDirectory() as data_dir, sync_playwright() as playwright:
        server, url = start_server(engine, Path(data_dir))
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            for mode in args.modes:
                for _ in range(args.repeats):
                    if mode == "binary-no-browser":
                        result = run_without_browser(url, engine)
                    else:
                        result = run_once(browser, url, mode, engine)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            browser.close()
            server.should_exit = True

    print(f"\n{args.points:,} points in {args.batches} batches, median of {args.repeats}:")
    print("| mode | bytes/point | first point on screen | all points on screen |")
    print("| --- | --- | --- | --- |")
    for mode in args.modes:
        runs = [r for r in results if r["mode"] == mode]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "mode"}
        print(
            f"| {mode} | {median['bytes_per_point']:.2f} | {median['first_point_s']:.2f} s "
            f"| {median['all_points_s']:.2f} s |"
        )


if __name__ == "__main__":
    main()
