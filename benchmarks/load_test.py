"""Load test: many WebSocket clients at once, each uploading real photos and reconstructing with
the COLMAP engine, against a real ``aetherscan serve`` process on loopback.

    PYTHONPATH=src python benchmarks/load_test.py [--clients 20] [--photos 3] [--rounds 8]

Each client sends the first photos of tests/fixtures/flowerpot (the run of three that COLMAP
places at these small sizes; most others it cannot), with the blue of every pixel raised by the
client's number, so that every job has a cloud of its own colours. COLMAP works at 480 pixels (at
320 it fails to place some of these sets). Each client starts its job and reads the streamed
points as a legacy client would (JSON ``points`` messages). Checked for every client:

- no ``error`` message, and ``reconstruction_complete`` arrives;
- ``total_points`` equals the points it received, its REST job's ``num_points`` and the vertex
  count of its job's PLY, and the sums of the red, green and blue values received equal those of
  the PLY (a point of another job would break the sums: no mixed results);
- its REST job is ``done``.

Meanwhile one more client sends a ping every 50 ms and times each pong, and the server's memory
(RSS of the server process, and of its engine child) is sampled every 0.2 s. With several rounds
the same clients run again, so a server that grows with every job would show it. The exit status
is 1 when any check fails; jobs that the engine fails (told alike over the WebSocket and REST)
are counted and listed apart.

All clients share one address (127.0.0.1), so the server runs with ``max_jobs_per_client`` and
``max_jobs_total`` raised to the number of clients; every other setting is the default.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from plyfile import PlyData
from websockets.asyncio.client import connect

FLOWERPOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "flowerpot"
SRC = Path(__file__).resolve().parents[1] / "src"
PING_INTERVAL_S = 0.05
MEMORY_INTERVAL_S = 0.2


@dataclass
class ClientResult:
    index: int
    photos: list[str]
    job_id: str = ""
    received_points: int = 0
    received_rgb_sum: list[int] = field(default_factory=lambda: [0, 0, 0])
    total_points: int | None = None
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    engine_failure: str = ""  # the engine's reason, told the same way over WS and REST
    problems: list[str] = field(default_factory=list)  # the server's


# The server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(data_dir: Path, port: int, clients: int, max_image_px: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["AETHERSCAN_COLMAP_MAX_IMAGE_PX"] = str(max_image_px)
    env["AETHERSCAN_MAX_JOBS_PER_CLIENT"] = str(clients)
    env["AETHERSCAN_MAX_JOBS_TOTAL"] = str(clients)
    command = [sys.executable, "-m", "aetherscan.cli", "serve", "--engine", "colmap"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    log = open(data_dir.parent / "server.log", "wb")  # noqa: SIM115
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_health(base_url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited at start-up; see its log")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def rss_mb(pid: int) -> float:
    """Resident memory of one process, or 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Child processes of any thread of ``pid`` (the engine's child comes from its thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


async def sample_memory(pid: int, samples: list[tuple[float, float, float]], stop: asyncio.Event):
    while not stop.is_set():
        child = sum(rss_mb(c) for c in children(pid))
        samples.append((time.monotonic(), rss_mb(pid), child))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_INTERVAL_S)


# Clients ---------------------------------------------------------------------------------------


def tinted(path: Path, blue: int) -> bytes:
    """The photo with ``blue`` added to the blue of every pixel, as a JPEG with its EXIF."""
    with Image.open(path) as image:
        exif = image.info.get("exif", b"")
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    pixels[..., 2] = np.clip(pixels[..., 2] + blue, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


async def run_client(
    url: str, index: int, photos: dict[str, bytes], timeout_s: float
) -> ClientResult:
    result = ClientResult(index, list(photos))
    started = time.monotonic()
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "features": ["job", "progress"]}))
        json.loads(await ws.recv())  # welcome
        for name, data in photos.items():
            data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
            await ws.send(json.dumps({"type": "image_data", "data": data_url, "filename": name}))
            reply = json.loads(await ws.recv())
            if reply["type"] != "image_received":
                result.errors.append(reply.get("message", str(reply)))
        await ws.send(json.dumps({"type": "upload_complete", "count": len(photos)}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
            if message["type"] == "points":
                points = message["data"]
                result.received_points += len(points)
                for channel, key in enumerate("rgb"):
                    result.received_rgb_sum[channel] += sum(p[key] for p in points)
            elif message["type"] == "queued":
                result.job_id = message["job_id"]
            elif message["type"] == "error":
                result.errors.append(message["message"])
                if message.get("code") == "job_failed":
                    break
            elif message["type"] == "reconstruction_complete":
                result.total_points = message["total_points"]
                if message["job_id"] != result.job_id:
                    result.problems.append(f"job id {message['job_id']} != {result.job_id}")
                break
    result.seconds = time.monotonic() - started
    return result


def pinger(url: str, stop: multiprocessing.synchronize.Event, results: Connection) -> None:
    """In a process of its own, so that the clients' parsing of points does not delay the
    reading of pongs: a ping every 50 ms, each round trip timed, until ``stop``."""
    from websockets.sync.client import connect as connect_sync

    rtts_ms = []
    with connect_sync(url) as ws:
        while not stop.is_set():
            sent = time.perf_counter()
            ws.send('{"type":"ping"}')
            reply = ws.recv(timeout=30)
            rtts_ms.append((time.perf_counter() - sent) * 1000)
            assert json.loads(reply) == {"type": "pong"}, reply
            stop.wait(PING_INTERVAL_S)
    results.send(rtts_ms)


FAILED = "the reconstruction failed: "


def check_with_rest(http: httpx.Client, result: ClientResult) -> None:
    """The client's stream against its job as REST serves it. A job that the engine could not
    do (COLMAP places no pair of photos) is an engine failure, not a problem of the server,
    when the client was told and REST says the same."""
    problems = result.problems
    if len(result.errors) == 1 and result.errors[0].startswith(FAILED) and result.job_id:
        status = http.get(f"/api/jobs/{result.job_id}").json()
        reason = result.errors[0].removeprefix(FAILED)
        if status["state"] == "failed" and status["error"] == reason:
            result.engine_failure = reason
            return
    if result.errors:
        problems.append("errors: " + " | ".join(result.errors))
    if result.total_points is None or not result.job_id:
        problems.append("no reconstruction_complete")
        return
    if result.total_points != result.received_points:
        problems.append(f"total_points {result.total_points} != {result.received_points} received")
    status = http.get(f"/api/jobs/{result.job_id}").json()
    if status["state"] != "done":
        problems.append(f"REST state {status['state']}: {status.get('error')}")
        return
    if status["num_points"] != result.total_points:
        problems.append(f"REST num_points {status['num_points']} != {result.total_points}")
    if [p["name"] for p in status["photos"]] != result.photos:
        problems.append("REST photos are not the client's")
    ply = PlyData.read(io.BytesIO(http.get(status["downloads"]["ply"]).content))["vertex"]
    if ply.count != result.total_points:
        problems.append(f"PLY has {ply.count} points, not {result.total_points}")
    rgb = [int(np.asarray(ply[c], np.int64).sum()) for c in ("red", "green", "blue")]
    if rgb != result.received_rgb_sum:
        problems.append(f"PLY colour sums {rgb} != received {result.received_rgb_sum}")


# The test --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def one_round(base: str, clients: int, photos: int, timeout_s: float, http: httpx.Client):
    paths = sorted(FLOWERPOT.glob("*.jpg"))[:photos]
    ws_url = base.replace("http", "ws") + "/ws"
    context = multiprocessing.get_context("spawn")
    stop, (receiver, sender) = context.Event(), context.Pipe(duplex=False)
    ping_process = context.Process(target=pinger, args=(ws_url, stop, sender))
    ping_process.start()
    started = time.monotonic()
    jobs = [
        run_client(ws_url, index, {p.name: tinted(p, index) for p in paths}, timeout_s)
        for index in range(clients)
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    wall_s = time.monotonic() - started
    stop.set()
    rtts = await asyncio.to_thread(receiver.recv)
    ping_process.join(30)
    checked = []
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            failed = ClientResult(index, [])
            failed.problems.append(f"client crashed: {type(result).__name__}: {result}")
            checked.append(failed)
            continue
        await asyncio.to_thread(check_with_rest, http, result)
        checked.append(result)
    return checked, rtts, wall_s


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="aetherscan-load-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(data_dir, port, args.clients, args.max_image_px)
        try:
            wait_for_health(base, server)
            memory: list[tuple[float, float, float]] = []
            stop_memory = asyncio.Event()
            memory_task = asyncio.create_task(sample_memory(server.pid, memory, stop_memory))
            idle_rss = rss_mb(server.pid)
            http = httpx.Client(base_url=base, timeout=60)
            failures, round_rss = 0, []
            for round_index in range(args.rounds):
                results, rtts, wall_s = await one_round(
                    base, args.clients, args.photos, args.timeout_s, http
                )
                round_rss.append(rss_mb(server.pid))
                bad = [r for r in results if r.problems]
                engine_failures = [r for r in results if r.engine_failure]
                failures += len(bad)
                points = [r.total_points or 0 for r in results]
                empty = sum(1 for r in results if r.total_points == 0)
                print(
                    f"round {round_index + 1}: {len(results)} clients, {len(bad)} with problems, "
                    f"{wall_s:.1f} s wall, points per job min/median/max "
                    f"{min(points)}/{int(statistics.median(points))}/{max(points)}, "
                    f"client time median {statistics.median(r.seconds for r in results):.1f} s"
                    + f", jobs with no point from the engine: {empty}"
                    + f", jobs the engine failed: {len(engine_failures)}"
                )
                print(
                    f"  ping while jobs ran: {len(rtts)} pongs, p50 {percentile(rtts, 50):.1f} ms, "
                    f"p99 {percentile(rtts, 99):.1f} ms, max {max(rtts, default=float('nan')):.1f} ms"
                )
                print(f"  server RSS after the round: {round_rss[-1]:.0f} MB")
                for result in bad:
                    print(f"  client {result.index}: SERVER PROBLEM {'; '.join(result.problems)}")
                for result in engine_failures:
                    print(f"  client {result.index}: engine failed: {result.engine_failure}")
            stop_memory.set()
            await memory_task
            http.close()
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        peak_server = max(s[1] for s in memory)
        peak_child = max(s[2] for s in memory)
        print(
            f"server RSS: {idle_rss:.0f} MB idle, peak {peak_server:.0f} MB, after each round "
            + ", ".join(f"{r:.0f}" for r in round_rss)
            + f" MB; engine child peak {peak_child:.0f} MB"
        )
        leftovers = list((data_dir / "tmp").iterdir())
        if leftovers:
            print(f"temporary files left: {[p.name for p in leftovers]}")
            failures += 1
        print("PASS" if failures == 0 else f"FAIL: {failures} problems")
        return 0 if failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--photos", type=int, default=3, help="photos per client")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-image-px", type=int, default=480, help="COLMAP's long side")
    parser.add_argument("--timeout-s", type=float, default=900, help="per client, per message")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
