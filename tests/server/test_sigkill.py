"""A real ``aetherscan serve`` process, with the COLMAP engine on the flowerpot photos, killed
with SIGKILL while it reconstructs, then started again on the same data folder: every finished
job is still listed with its downloads, the job it was running is failed with the reason, and
what the killed process was writing (the engine's working folder in the data folder's tmp/) is
removed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

import aetherscan
from aetherscan.server.storage import RESTARTED

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """``python -m aetherscan.cli serve`` in a process group of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = dict(os.environ)
        src = str(Path(aetherscan.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        env["AETHERSCAN_COLMAP_MAX_IMAGE_PX"] = "320"
        self.log = open(data_dir.parent / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "aetherscan.cli", "serve", "--engine", "colmap"),
                *("--port", str(self.port), "--data-dir", str(data_dir)),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log_text()
            try:
                if self.http.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start: " + self.log_text()
            time.sleep(0.1)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def wait_for(self, job_id: str, states, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.http.get(f"/api/jobs/{job_id}").json()
            if status["state"] in states:
                return status
            time.sleep(0.05)
        raise AssertionError(f"{job_id} never reached {states}: {status}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Only the server process: the engine's child, if any, is left to itself."""
        self.process.send_signal(sig)
        self.process.wait(30)

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):  # an orphaned engine child, if any
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def photo_files(count: int) -> list:
    paths = sorted(FLOWERPOT.glob("*.jpg"))[:count]
    return [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]


def test_a_server_killed_mid_job_keeps_its_finished_jobs_and_fails_the_running_one(tmp_path):
    data = tmp_path / "data"
    server = ServeProcess(data)
    try:
        done_id = server.http.post("/api/jobs", files=photo_files(3)).json()["job_id"]
        done = server.wait_for(done_id, ("done", "failed"))
        assert done["state"] == "done", done["error"]
        downloads = {
            name: server.http.get(url).content
            for name, url in done["downloads"].items()
            if name in ("ply", "cameras")
        }
        assert downloads["ply"].startswith(b"ply\n")

        # A job cancelled by its client over the WebSocket: finished too.
        with connect(f"ws://127.0.0.1:{server.port}/ws") as client:
            client.send(json.dumps({"type": "hello", "features": ["job", "progress"]}))
            client.recv(timeout=10)
            for path in sorted(FLOWERPOT.glob("*.jpg"))[:1]:
                client.send(
                    json.dumps(
                        {
                            "type": "image_data",
                            "filename": path.name,
                            "data": "data:image/jpeg;base64,"
                            + __import__("base64").b64encode(path.read_bytes()).decode(),
                        }
                    )
                )
                client.recv(timeout=10)
            client.send(json.dumps({"type": "cancel"}))
            assert json.loads(client.recv(timeout=10))["type"] == "cancelled"
        cancelled_id = next(p.name for p in (data / "jobs").iterdir() if p.name != done_id)

        running_id = server.http.post("/api/jobs", files=photo_files(8)).json()["job_id"]
        running = server.wait_for(running_id, ("running", "done", "failed"))
        while running["stage"] in ("", "load") and running["state"] == "running":
            running = server.http.get(f"/api/jobs/{running_id}").json()
            time.sleep(0.02)
        assert running["state"] == "running", "the job ended before the kill"
        server.kill()
    finally:
        server.close()

    # The engine's working folder of the killed job is still there (its COLMAP child may be
    # too: it dies at its next report to the server that is gone).
    assert [p.name[:18] for p in (data / "tmp").iterdir()] == ["aetherscan-colmap-"]

    again = ServeProcess(data)
    try:
        assert again.http.get(f"/api/jobs/{done_id}").json() == done
        for name, content in downloads.items():
            assert again.http.get(done["downloads"][name]).content == content
        cancelled = again.http.get(f"/api/jobs/{cancelled_id}").json()
        assert cancelled["state"] == "cancelled"
        failed = again.http.get(f"/api/jobs/{running_id}").json()
        assert failed["state"] == "failed" and failed["error"] == RESTARTED
        assert failed["downloads"] == {}
        reply = again.http.get(f"/api/jobs/{running_id}/files/scene.ply")
        assert reply.status_code == 409 and RESTARTED in reply.json()["detail"]
        assert sorted(p.name for p in (data / "jobs" / running_id).iterdir()) == []
        assert list((data / "tmp").iterdir()) == []
        # The restarted server takes new work.
        new_id = again.http.post("/api/jobs", files=photo_files(3)).json()["job_id"]
        new = again.wait_for(new_id, ("done", "failed"))
        assert new["state"] == "done", new["error"]
        assert list((data / "tmp").iterdir()) == [], "temporary files after a job"
    finally:
        again.close()
