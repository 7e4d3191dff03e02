"""The scale-out, measured with real processes on loopback (issue 12): a real redis-server,
``aetherscan serve --broker`` and ``aetherscan worker`` processes, as in the tests
(tests/server/queue_kit.py starts them).

* **throughput**: 8 small COLMAP jobs (the first photos of a folder, COLMAP at 320 px, one
  thread per worker) submitted at once, with one worker and with two; the ratio of the wall
  times (first POST to last ``done``). Goal: >= 1.8x on 2 cores.
* **latency**: what the queue adds per job against the in-process worker, with an engine that
  takes no time (tests/server/queue_engines.py, ``scripted``): upload_complete sent to the first
  ``progress`` message, and the last point to ``reconstruction_complete``, medians over
  ``--jobs`` jobs each. Goal: <= 100 ms each.
* **recovery**: seconds from a worker's SIGKILL to its job running on the other worker, with the
  default lease (15 s) and a short one.

    PYTHONPATH=src python benchmarks/bench_queue.py --photos tests/fixtures/flowerpot
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))

from queue_kit import Cluster, post_job, wait_until
from server_kit import Client, photo_bytes

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def throughput(photos: dict[str, bytes], workers: int, jobs: int, folder: Path, fsync: str) -> dict:
    env = {
        "AETHERSCAN_ENGINE": "colmap",
        "AETHERSCAN_COLMAP_MAX_IMAGE_PX": "320",
        "AETHERSCAN_COLMAP_THREADS": "1",
        "AETHERSCAN_MAX_JOBS_PER_CLIENT": str(jobs),
        **ONE_THREAD,
    }
    running = Cluster(folder, env, fsync)
    try:
        http = running.start(*(f"w{i}" for i in range(workers)), timeout_s=120)
        cpu_before = cpu_seconds(running)
        start = time.perf_counter()
        ids = [post_job(http, photos) for _ in range(jobs)]
        states = [running.wait_for(job_id, ("done", "failed"), 1800) for job_id in ids]
        wall = time.perf_counter() - start
        cpu = {
            role: round(t - cpu_before.get(role, 0.0), 2)
            for role, t in cpu_seconds(running).items()
        }
    finally:
        running.stop()
    return {
        "workers": workers,
        "jobs": jobs,
        "wall_s": round(wall, 2),
        "cpu_s": cpu,  # CPU seconds of each process group over the run (children included)
        "cores_busy": round(sum(cpu.values()) / wall, 2),
        "done": sum(s["state"] == "done" for s in states),
        "verdicts": sorted({(s.get("quality") or {}).get("verdict", "-") for s in states}),
    }


def cpu_seconds(running: Cluster) -> dict[str, float]:
    """CPU seconds so far of the server's and each worker's process group (Linux /proc: user and
    system time of every live process of the group, with its waited-for children's)."""
    groups = {"server": running.server.pid} if running.server else {}
    groups |= {f"worker {name}": worker.pid for name, worker in running.workers.items()}
    totals = dict.fromkeys(groups, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        group = int(fields[2])  # the process group id
        for role, pid in groups.items():
            if group == pid:
                totals[role] += sum(int(v) for v in fields[11:15]) / tick
    return totals


def stream_times(port: int, photos: dict[str, bytes]) -> tuple[float, float]:
    """(upload_complete -> first progress, last point -> reconstruction_complete) in ms."""
    with Client(f"ws://127.0.0.1:{port}/ws") as client:
        client.send({"type": "hello", "protocol": 1, "features": ["progress", "binary_points"]})
        client.receive()
        client.upload(photos)
        sent = time.perf_counter()
        client.send({"type": "upload_complete", "count": len(photos)})
        first_progress = last_point = None
        while True:
            message = client.receive(60)
            now = time.perf_counter()
            if isinstance(message, bytes):
                last_point = now
            elif message["type"] == "progress" and first_progress is None:
                first_progress = now
            elif message["type"] == "reconstruction_complete":
                assert first_progress is not None and last_point is not None
                return (first_progress - sent) * 1000, (now - last_point) * 1000


def latency(photos: dict[str, bytes], jobs: int, folder: Path) -> dict:
    env = {"AETHERSCAN_ENGINE": "queue_engines:scripted", "AETHERSCAN_TEST_DELAY_S": "0"}
    results = {}
    for mode in ("in-process", "queue"):
        running = Cluster(folder / mode, env)
        try:
            if mode == "queue":
                running.start("w")
            else:
                running.serve(AETHERSCAN_BROKER_URL="")
            stream_times(running.port, photos)  # warm-up
            times = [stream_times(running.port, photos) for _ in range(jobs)]
        finally:
            running.stop()
        results[mode] = {
            "first_progress_ms": round(statistics.median(t[0] for t in times), 1),
            "complete_after_last_point_ms": round(statistics.median(t[1] for t in times), 1),
        }
    results["added_ms"] = {
        key: round(results["queue"][key] - results["in-process"][key], 1)
        for key in results["queue"]
    }
    return results


def recovery(lease_s: float, trials: int, folder: Path) -> dict:
    env = {"AETHERSCAN_TEST_DELAY_S": "2", "AETHERSCAN_WORKER_LEASE_S": str(lease_s)}
    seconds = [recovery_trial(env, folder / f"lease-{lease_s}-{trial}") for trial in range(trials)]
    return {"lease_s": lease_s, "seconds": seconds}


def recovery_trial(env: dict[str, str], folder: Path) -> float:
    """Seconds from the SIGKILL of the worker running a job to the other worker running it."""
    photos = {f"p{i}.jpg": photo_bytes((60 * i, 90, 200 - 60 * i)) for i in range(4)}
    running = Cluster(folder, env)
    try:
        http = running.start("a", "b")
        job_id = post_job(http, photos)
        victim = wait_until(lambda: running.lease_holder(job_id), 30, "a worker")
        killed = time.perf_counter()
        running.workers[victim].kill()
        other = "b" if victim == "a" else "a"
        wait_until(lambda: running.lease_holder(job_id) == other, 120, "the rerun", 0.02)
        seconds = round(time.perf_counter() - killed, 2)
        running.wait_for(job_id, ("done",), 120)
    finally:
        running.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=Path("tests/fixtures/flowerpot"))
    parser.add_argument("--per-job", type=int, default=5, help="photos per COLMAP job")
    parser.add_argument("--jobs", type=int, default=8, help="COLMAP jobs per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="throughput pairs (1, 2 workers)")
    parser.add_argument(
        "--fsync",
        choices=["always", "everysec"],
        default="always",
        help="Redis's appendfsync (docker-compose.yml: always)",
    )
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--recovery-trials", type=int, default=2)
    parser.add_argument("--only", choices=["throughput", "latency", "recovery"], default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    photos = {p.name: p.read_bytes() for p in files[: args.per_job]}
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "throughput"):
            # One worker, then two, again and again: the machine's noise hits both alike.
            pairs = [
                [
                    throughput(photos, w, args.jobs, folder / f"t{r}-w{w}", args.fsync)
                    for w in (1, 2)
                ]
                for r in range(args.repeats)
            ]
            ratios = sorted(one["wall_s"] / two["wall_s"] for one, two in pairs)
            report["throughput"] = {
                "fsync": args.fsync,
                "runs": pairs,
                "speed_ups": [round(r, 2) for r in ratios],
                "median_speed_up": round(statistics.median(ratios), 2),
            }
            print(json.dumps(report["throughput"]), flush=True)
        if args.only in (None, "latency"):
            small = {f"s{i}.jpg": photo_bytes((40 * i, 80, 120)) for i in range(3)}
            report["latency"] = latency(small, args.latency_jobs, folder / "latency")
            print(json.dumps(report["latency"]), flush=True)
        if args.only in (None, "recovery"):
            report["recovery"] = [
                recovery(lease, args.recovery_trials, folder / "recovery") for lease in (15, 2)
            ]
            print(json.dumps(report["recovery"]), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
