"""Queue test kit: a real ``redis-server``, a real S3 endpoint (moto's standalone server), and
``aetherscan serve --broker`` and ``aetherscan worker`` processes, all on loopback.

Redis runs with append-only persistence (fsync always), as the compose file configures it,
so a restart keeps what it held. Every process gets a port of its own and a log file in the
test's folder; a failing test prints the logs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

import aetherscan

TESTS_SERVER = Path(__file__).resolve().parent
SRC = Path(aetherscan.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Process:
    """A child process in a session of its own, with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self, tail: int = 4000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def kill(self, sig: int = signal.SIGKILL, group: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # the pool's children, if any are left
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


class RedisServer:
    def __init__(self, folder: Path, fsync: str = "always") -> None:
        """``fsync``: when the append-only file is flushed to disk (Redis's appendfsync)."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("no redis-server: install Debian's redis-server package (.ci/run does)")
        self.executable, self.folder, self.fsync = executable, folder, fsync
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        self._client: redis.Redis | None = None
        self.start()

    def start(self) -> None:
        command = [
            self.executable,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--appendonly", "yes", "--appendfsync", self.fsync, "--save", ""),
            *("--protected-mode", "no"),
        ]
        self.process = Process(f"redis-{self.port}", command, dict(os.environ), self.folder)
        wait_until(lambda: _pings(self.client()), 20, "redis-server to answer")

    def client(self) -> redis.Redis:
        """The test's own connection (one, closed at the end)."""
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=5)
        return self._client

    def restart(self, lose_data: bool = False) -> None:
        """SHUTDOWN (its append-only file is on disk) and start again; or with ``lose_data``,
        SIGKILL, the append-only file removed, and start again empty."""
        assert self.process is not None
        if lose_data:
            self.process.kill()
            shutil.rmtree(self.folder / "appendonlydir")
        else:
            with contextlib.suppress(redis.ConnectionError):
                self.client().shutdown(nosave=True)
            self.process.process.wait(timeout=20)
        self.client().close()
        self.process.stop()
        self.start()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.process is not None:
            self.process.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class S3Server:
    """moto's standalone S3-compatible server on loopback, with a bucket."""

    def __init__(self, folder: Path, bucket: str = "scans") -> None:
        import boto3

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **self.credentials()}
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = Process(f"moto-{self.port}", command, env, folder)
        wait_until(self._answers, 30, "moto's server to answer", 0.1)
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.bucket = bucket
        self.client.create_bucket(Bucket=bucket)

    def _answers(self) -> bool:
        assert self.process.alive(), self.process.log_text()
        try:
            httpx.get(self.endpoint, timeout=1)
        except httpx.TransportError:
            return False
        return True

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    @staticmethod
    def credentials() -> dict[str, str]:
        """Made-up credentials, and no look for others: boto3 would otherwise ask the cloud's
        metadata address, which is not on loopback."""
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def env(self, prefix: str = "aetherscan") -> dict[str, str]:
        return {
            "AETHERSCAN_STORAGE_URL": f"s3://{self.bucket}/{prefix}",
            "AETHERSCAN_S3_ENDPOINT_URL": self.endpoint,
            **self.credentials(),
        }

    def stop(self) -> None:
        self.process.stop()


class Cluster:
    """One Redis, one ``serve --broker`` and any number of workers, sharing ``data_dir`` unless
    told otherwise; ``env`` goes to every process (settings, the test engines' knobs)."""

    def __init__(
        self, folder: Path, env: dict[str, str] | None = None, fsync: str = "always"
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.data_dir = folder / "data"
        self.redis = RedisServer(folder, fsync)
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(SRC), str(TESTS_SERVER), os.environ.get("PYTHONPATH")])
            ),
            "AETHERSCAN_BROKER_URL": self.redis.url,
            "AETHERSCAN_WORKER_LEASE_S": "2",
            "AETHERSCAN_ENGINE": "queue_engines:scripted",
            "AETHERSCAN_MAX_JOBS_PER_CLIENT": "16",
            **(env or {}),
        }
        self.server: Process | None = None
        self.http: httpx.Client | None = None
        self.port = 0
        self.workers: dict[str, Process] = {}

    def serve(self, **env: str) -> httpx.Client:
        self.port = self.port or free_port()
        command = [sys.executable, "-m", "aetherscan.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        if self.server is not None:
            self.server.stop()
        self.server = Process(f"serve-{self.port}", command, {**self.env, **env}, self.folder)
        http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

        def healthy() -> bool:
            assert self.server is not None and self.server.alive(), self.server.log_text()
            try:
                return http.get("/api/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "the server to start", 0.1)
        if self.http is not None:
            self.http.close()
        self.http = http
        return http

    def worker(self, name: str, data_dir: Path | None = None, **env: str) -> Process:
        command = [sys.executable, "-m", "aetherscan.cli", "worker", "--name", name]
        command += ["--data-dir", str(data_dir or self.data_dir)]
        worker = Process(f"worker-{name}", command, {**self.env, **env}, self.folder)
        self.workers[name] = worker
        return worker

    def start(self, *names: str, timeout_s: float = 60) -> httpx.Client:
        """Workers of these names and the server, once the workers are ready."""
        for name in names:
            self.worker(name)
        http = self.serve()
        self.wait_ready(*names, timeout_s=timeout_s)
        return http

    def wait_ready(self, *names: str, timeout_s: float = 60) -> None:
        """Until each worker's pool child has built its engine."""
        for name in names:
            worker = self.workers[name]

            def ready(worker: Process = worker) -> bool:
                assert worker.alive(), worker.log_text()
                return "engine is ready" in worker.log_text(100_000)

            wait_until(ready, timeout_s, f"worker {name} to be ready", 0.1)

    def lease_holder(self, job_id: str) -> str | None:
        value = self.redis.client().get(f"aetherscan:job:{job_id}:lease")
        return value.decode() if value else None

    def wait_for(self, job_id: str, states, timeout_s: float = 60) -> dict:
        status: dict = {}

        def reached() -> bool:
            nonlocal status
            assert self.http is not None
            status = self.http.get(f"/api/jobs/{job_id}").json()
            return status.get("state") in states

        try:
            wait_until(reached, timeout_s, f"job {job_id} to reach {states}")
        except AssertionError:
            raise AssertionError(f"{status}\n{self.logs()}") from None
        return status

    def logs(self) -> str:
        parts = [self.server] if self.server else []
        parts += list(self.workers.values())
        return "\n".join(f"--- {p.name}\n{p.log_text()}" for p in parts)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        for process in [*self.workers.values(), *([self.server] if self.server else [])]:
            process.stop()
        self.redis.stop()


@contextlib.contextmanager
def cluster(folder: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    running = Cluster(folder, env)
    try:
        yield running
    finally:
        running.stop()


def post_job(http: httpx.Client, photos: dict[str, bytes]) -> str:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    answer = http.post("/api/jobs", files=files)
    assert answer.status_code == 201, answer.text
    return answer.json()["job_id"]
