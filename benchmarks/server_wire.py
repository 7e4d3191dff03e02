"""Points on the wire: bytes per point and encoding time of JSON messages and binary frames, and
the time from the first point computed to the last point received by a WebSocket client, and
how long another client waits for a pong meanwhile.

    PYTHONPATH=src python benchmarks/server_wire.py [--points 1000000] [--views 20]

The server runs in a child process (so that the client does not share its interpreter) with an
engine that emits ready-made points the moment it is called, as an engine does when a view is
done; it writes the time of its first ``observer.points`` call to a file. The client measures
when the first and the last point arrive. Times are wall-clock on one machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def random_cloud(n: int, views: int, seed: int = 0):
    from aetherscan.reconstruction import PointCloud

    rng = np.random.default_rng(seed)
    return PointCloud(
        xyz=(rng.normal(size=(n, 3)) * [2, 1, 3]).astype(np.float32),
        rgb=rng.integers(0, 256, (n, 3)).astype(np.uint8),
        confidence=rng.uniform(1, 30, n).astype(np.float32),
        view_index=np.repeat(np.arange(views, dtype=np.int32), -(-n // views))[:n],
    )


def encoding(n: int, views: int) -> dict:
    """Encode the whole cloud both ways; the best of three runs."""
    from aetherscan.server.protocol import encode_points

    cloud = random_cloud(n, views)
    result = {}
    for name, binary in (("json", False), ("binary", True)):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            messages, count = encode_points(cloud, binary)
            times.append(time.perf_counter() - started)
        size = sum(len(m.encode() if isinstance(m, str) else m) for m in messages)
        result[name] = {
            "messages": len(messages),
            "bytes_per_point": size / count,
            "encode_s": min(times),
            "encode_ns_per_point": min(times) / count * 1e9,
        }
    return result


class BurstEngine:
    """Emits a ready-made cloud, one batch per view, as soon as it is called."""

    name = "burst"

    def __init__(self, n: int, views: int, times_file: str) -> None:
        self.cloud = random_cloud(n, views)
        self.views = views
        self.times_file = times_file

    def reconstruct(self, photos, observer=None):
        from aetherscan.reconstruction import Reconstruction, View

        Path(self.times_file).write_text(json.dumps({"first_points": time.time()}))
        result = []
        for v in range(self.views):
            part = self.cloud.select(self.cloud.view_index == v)
            observer.points(part)
            K = np.array([[64.0, 0, 32], [0, 64, 24], [0, 0, 1]])
            result.append(View(f"v{v}", 64, 48, K, np.eye(4), part.xyz, part.rgb, part.confidence))
        return Reconstruction(engine=self.name, views=result)


def run_server(port: int, data_dir: str, n: int, views: int, times_file: str) -> None:
    import uvicorn

    from aetherscan.server.app import create_app, server_config
    from aetherscan.settings import Settings

    settings = Settings(data_dir=Path(data_dir), web_dir=Path(data_dir) / "no-web")
    app = create_app(settings, BurstEngine(n, views, times_file))
    uvicorn.Server(
        server_config(app, settings, host="127.0.0.1", port=port, log_level="warning")
    ).run()


def photo() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def one_job(port: int, binary: bool, times_file: str) -> dict:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        if binary:
            ws.send(json.dumps({"type": "hello", "features": ["binary_points"]}))
            ws.recv()
        for name in ("a.jpg", "b.jpg"):
            ws.send(json.dumps({"type": "image_data", "data": photo(), "filename": name}))
            ws.recv()
        ws.send(json.dumps({"type": "upload_complete", "count": 2}))
        first = None
        received_bytes = 0
        while True:
            message = ws.recv()
            now = time.time()
            if isinstance(message, bytes) or message.startswith('{"type":"points"'):
                first = first or now
                last = now
                received_bytes += len(message)
                continue
            reply = json.loads(message)
            if reply["type"] == "reconstruction_complete":
                break
            raise RuntimeError(reply)
    computed = json.loads(Path(times_file).read_text())["first_points"]
    return {
        "points": reply["total_points"],
        "bytes": received_bytes,
        "first_point_s": first - computed,
        "all_points_s": last - computed,
    }


class Pinger:
    """Another client that pings every 10 ms while the jobs stream, timing each pong."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.rtts_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{self.port}/ws") as ws:
            while not self._stop.is_set():
                started = time.perf_counter()
                ws.send('{"type":"ping"}')
                ws.recv()
                self.rtts_ms.append((time.perf_counter() - started) * 1e3)
                time.sleep(0.01)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.rtts_ms, q))

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def end_to_end(n: int, views: int, repeats: int) -> dict:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        times_file = os.path.join(folder, "times.json")
        server = multiprocessing.Process(
            target=run_server, args=(port, folder, n, views, times_file), daemon=True
        )
        server.start()
        try:
            import httpx

            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            result = {}
            for name, binary in (("json", False), ("binary", True)):
                with Pinger(port) as pinger:
                    runs = [one_job(port, binary, times_file) for _ in range(repeats)]
                result[name] = {
                    "ping_ms_p50": pinger.percentile(50),
                    "ping_ms_p99": pinger.percentile(99),
                    "points": runs[0]["points"],
                    "bytes_per_point": runs[0]["bytes"] / runs[0]["points"],
                    "first_point_s": statistics.median(r["first_point_s"] for r in runs),
                    "all_points_s": statistics.median(r["all_points_s"] for r in runs),
                }
            return result
        finally:
            server.terminate()
            server.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = {
        "encoding": encoding(args.points, args.views),
        "websocket": end_to_end(args.points, args.views, args.repeats),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
