"""``aetherscan worker``: a Celery worker that runs the jobs ``aetherscan serve --broker``
enqueues, on one engine and one device (docs/scaling.md).

The worker is Celery's prefork pool with one child process: the child builds the engine once
and runs one job at a time; the parent takes a message only when the child is free (prefetch of
one) and acknowledges it after the job (late acknowledgement), so a message whose worker dies
goes back to the queue. A job past ``job_time_limit_s`` is stopped (Celery's soft limit) or,
if it does not stop, its child is killed and replaced (the hard limit, a tenth later, 1 to 30 s); the job
fails with a sentence either way. A child dies with its parent (PR_SET_PDEATHSIG): a worker
killed with SIGKILL leaves no job running for nobody.

What a job says goes through Redis (``aetherscan.workers.channel``): the worker takes the job
under a lease, renews it while it runs, streams the job's events and ends it with one of done,
failed or cancelled. The photos come from, and the results go to, the store
(``aetherscan.workers.blobs``): the data folder, or object storage.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_process_init

from aetherscan.engines.base import (
    Cancelled,
    Engine,
    EngineError,
    JobOptions,
    Observer,
    Photo,
    Preview,
    run_engine,
)
from aetherscan.reconstruction import PointCloud, Reconstruction
from aetherscan.server.results import write_results
from aetherscan.server.storage import StorageError, without_paths
from aetherscan.settings import Settings
from aetherscan.workers.blobs import Blobs, FolderBlobs, open_blobs, result_prefix
from aetherscan.workers.channel import (
    CLAIM_SCRIPT,
    END_SCRIPT,
    FINISHED,
    QUEUE,
    RENEW_SCRIPT,
    TASK,
    Event,
    JobKeys,
    text,
)

log = logging.getLogger(__name__)

STOPPED_TRIES = (
    "the job was started {times} and each time its worker stopped before the end "
    "(killed, out of memory, or its machine lost) (setting max_tries = {most})"
)
NO_PHOTOS = (
    "this worker cannot find the job's photos: the job was deleted meanwhile, or the worker's "
    "data folder is not the server's (give it the same --data-dir, or object storage with "
    "--storage-url)"
)
PUBLISH_PATIENCE_S = 10.0
TIME_LIMIT = (
    "the job ran for longer than the time limit of {limit:.0f} s and was stopped "
    "(setting job_time_limit_s)"
)


def make_celery(settings: Settings) -> Celery:
    """The Celery application of the server (which sends) and the workers (which take)."""
    if not settings.broker_url:
        raise ValueError("no broker: set --broker (AETHERSCAN_BROKER_URL) to redis://HOST:PORT/0")
    app = Celery("aetherscan", broker=settings.broker_url, set_as_current=False)
    limit = settings.job_time_limit_s
    grace = hard_limit_grace_s(limit)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=limit,
        task_time_limit=limit + grace,
        # A message not acknowledged this long is given to another worker; a copy of a job that
        # still runs finds it taken (the lease) and is dropped.
        broker_transport_options={"visibility_timeout": int(limit + 2 * grace + 60)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def hard_limit_grace_s(limit_s: float) -> float:
    """How long after the soft time limit a job's child is killed: a tenth, 1 to 30 s."""
    return min(30.0, max(1.0, limit_s / 10))


# The worker ----------------------------------------------------------------------------------


class _Worker:
    """What one worker process (the pool's child) holds: settings, engine, store, Redis."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings, self.name = settings, name
        self.redis = redis.Redis.from_url(
            settings.broker_url or "", socket_timeout=30, socket_connect_timeout=5
        )
        self.blobs: Blobs = open_blobs(
            settings.storage_url, settings.data_dir, settings.s3_endpoint_url
        )
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from aetherscan.engines import create_engine

            self._engine = create_engine(self.settings.engine, **self.settings.engine_options())
            log.info("%s: the %s engine is ready", self.name, self._engine.name)
        return self._engine

    def publish(self, keys: JobKeys, event: Event) -> None:
        """Add the event to the job's stream, waiting out a Redis that restarts (up to
        PUBLISH_PATIENCE_S); then the job fails, and the server runs it again when the lease
        lapses."""
        fields = event.fields()
        deadline = time.monotonic() + PUBLISH_PATIENCE_S
        while True:
            try:
                self.redis.xadd(keys.events, fields)  # type: ignore[arg-type]
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def end(self, keys: JobKeys, event: Event) -> bool:
        """Tell the job's end, if this worker still holds it."""
        fields = event.fields()
        told = self.redis.eval(
            END_SCRIPT,
            3,
            keys.job,
            keys.lease,
            keys.events,
            self.name,
            event.kind,
            event.kind,
            fields["attempt"],
            fields["body"],
        )
        return bool(told)

    def run(
        self,
        job_id: str,
        attempt: int,
        photos: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> str:
        """Run one job, if it is this worker's to run; what happened, for the log. ``options``:
        the job options its client chose (``JobOptions.chosen()``)."""
        keys = JobKeys(job_id)
        settings = self.settings
        lease_ms = int(settings.worker_lease_s * 1000)
        verdict = self.redis.eval(
            CLAIM_SCRIPT, 2, keys.job, keys.lease, attempt, self.name, lease_ms, settings.max_tries
        )
        verdict = text(verdict)
        if verdict == "exhausted":
            tries = int(self.redis.hget(keys.job, "tries") or 0) - 1
            times = "once" if tries == 1 else f"{tries} times"
            reason = STOPPED_TRIES.format(times=times, most=settings.max_tries)
            fail_unheld(self.redis, keys, attempt, reason)
            return "failed: " + reason
        if verdict != "claimed":
            return f"not run ({verdict})"
        with _Lease(self, keys, lease_ms) as lease:
            return self._run_claimed(keys, attempt, photos, options, lease)

    def _run_claimed(
        self,
        keys: JobKeys,
        attempt: int,
        photos: list[dict[str, Any]],
        options: dict[str, Any] | None,
        lease: _Lease,
    ) -> str:
        cancel = self.redis.get(keys.cancel)
        if cancel is not None:
            self.end(keys, Event("cancelled", attempt, {"reason": text(cancel)}))
            return "cancelled before it started"
        observer = _StreamingObserver(self, keys, attempt, lease)
        started_by = {"worker": self.name, "engine": self.engine.name}
        self.publish(keys, Event("started", attempt, started_by))
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="aetherscan-job-") as work:
                summary = self._reconstruct(keys.job_id, photos, options, Path(work), observer)
        except Cancelled as exc:
            if lease.lost.is_set():
                return "abandoned: its lease was lost, another worker may run it"
            outcome = Event("cancelled", attempt, {"reason": str(exc) or "the job was cancelled"})
        except SoftTimeLimitExceeded:
            reason = TIME_LIMIT.format(limit=self.settings.job_time_limit_s)
            outcome = Event("failed", attempt, {"reason": reason})
        except EngineError as exc:
            outcome = Event("failed", attempt, {"reason": without_paths(str(exc))})
        except (StorageError, FileNotFoundError) as exc:
            reason = f"the results could not be stored: {exc}"
            outcome = Event("failed", attempt, {"reason": without_paths(reason)})
        except Exception as exc:
            log.exception("job %s failed", keys.job_id)
            reason = without_paths(f"{type(exc).__name__}: {exc}")
            outcome = Event(
                "failed", attempt, {"reason": f"internal error in the engine ({reason})"}
            )
        else:
            outcome = Event("done", attempt, summary)
        if not self.end(keys, outcome):
            return "abandoned: its lease was lost, another worker may run it"
        return f"{outcome.kind} in {time.perf_counter() - started:.1f} s"

    def _reconstruct(
        self,
        job_id: str,
        photos: list[dict[str, Any]],
        options: dict[str, Any] | None,
        work: Path,
        observer: _StreamingObserver,
    ) -> dict[str, Any]:
        try:
            chosen = JobOptions.from_json(options)
        except ValueError as exc:  # a server newer than this worker
            raise EngineError(f"this worker cannot run the job: {exc}") from None
        inputs = []
        for index, photo in enumerate(photos):
            path = self._fetch(photo["key"], work / f"{index:04d}{Path(photo['key']).suffix}")
            mask = photo.get("mask")
            mask_path = (
                self._fetch(mask, work / f"{index:04d}-mask{Path(mask).suffix}") if mask else None
            )
            inputs.append(Photo(photo["label"], path, mask_path))
        reconstruction = run_engine(self.engine, inputs, observer, chosen)
        if observer.points_sent == 0:
            # An engine that streams nothing: its clients still get the cloud, before the end.
            for index in range(len(reconstruction.views)):
                observer.points(reconstruction.view_cloud(index))
        observer.check()
        prefix = result_prefix(job_id)
        if isinstance(self.blobs, FolderBlobs):
            scratch = self.blobs.scratch_folder(prefix)
        else:
            scratch = work / "result"
        try:
            write_results(reconstruction, scratch)
            observer.check()
            self.blobs.publish_folder(scratch, prefix)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        return _summary(reconstruction)

    def _fetch(self, key: str, path: Path) -> Path:
        local = self.blobs.local_path(key)
        if local is not None:
            if not local.is_file():
                raise EngineError(NO_PHOTOS)
            return local
        self.blobs.download(key, path)
        return path


def _summary(reconstruction: Reconstruction) -> dict[str, Any]:
    """What the server records of a finished job (``Storage.finish``)."""
    return {
        "num_points": reconstruction.num_points,
        "views": [
            {"name": v.name, "width": v.width, "height": v.height} for v in reconstruction.views
        ],
        "dropped": [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped],
        "quality": reconstruction.quality.to_json(),
        "masks": reconstruction.masks,
    }


class _Lease:
    """Renews the worker's lease on its job in a thread, and watches for a cancel: either ends
    the job at the engine's next Observer call. A lease found lost (Redis restarted past its
    expiry, a pause longer than the lease) stops the job too, since the server may have given it
    to another worker."""

    def __init__(self, worker: _Worker, keys: JobKeys, lease_ms: int) -> None:
        self.worker, self.keys, self.lease_ms = worker, keys, lease_ms
        self.cancel_reason: str | None = None
        self.lost = threading.Event()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # released already by the job's end
            self.worker.redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                1,
                self.keys.lease,
                self.worker.name,
            )

    def _renew(self) -> None:
        interval = self.lease_ms / 3000
        while not self.stop.wait(min(interval, 0.5)):
            try:
                if not self.worker.redis.eval(
                    RENEW_SCRIPT, 1, self.keys.lease, self.worker.name, self.lease_ms
                ):
                    if not self.stop.is_set():
                        log.warning("job %s: the lease was lost", self.keys.job_id)
                        self.lost.set()
                    return
                reason = self.worker.redis.get(self.keys.cancel)
            except redis.RedisError as exc:
                log.warning(
                    "job %s: Redis did not answer (%s); trying again", self.keys.job_id, exc
                )
                continue
            if reason is not None:
                self.cancel_reason = text(reason)

    def check(self) -> None:
        if self.lost.is_set():
            raise Cancelled("the lease on this job was lost")
        if self.cancel_reason is not None:
            raise Cancelled(self.cancel_reason)


class _StreamingObserver(Observer):
    """Streams the engine's calls to the job's events; stops it when cancelled."""

    def __init__(self, worker: _Worker, keys: JobKeys, attempt: int, lease: _Lease) -> None:
        self.worker, self.keys, self.attempt, self.lease = worker, keys, attempt, lease
        self.points_sent = 0

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.check()
        data = {"stage": stage, "fraction": float(fraction), "message": message}
        self.worker.publish(self.keys, Event("progress", self.attempt, data))

    def points(self, cloud: PointCloud) -> None:
        self.check()
        if len(cloud):
            self.points_sent += len(cloud)
            self.worker.publish(self.keys, Event("points", self.attempt, cloud))

    def preview(self, preview: Preview) -> None:
        self.check()
        self.worker.publish(self.keys, Event("preview", self.attempt, preview))

    def check(self) -> None:
        self.lease.check()


# Celery wiring -------------------------------------------------------------------------------

_worker: _Worker | None = None  # this process's, once it is a pool child
_settings: Settings | None = None  # set before the pool starts; its children inherit it
_name = ""


class ReconstructTask(Task):
    """Tells a job's end when the child running it was killed for its hard time limit (this
    runs in the parent, which is still there)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(exc, TimeLimitExceeded) or _settings is None:
            return
        job_id, attempt = args[0], args[1]
        keys = JobKeys(job_id)
        reason = TIME_LIMIT.format(limit=_settings.job_time_limit_s)
        client = redis.Redis.from_url(_settings.broker_url or "", socket_timeout=10)
        try:
            state = client.hget(keys.job, "state")
            if state is not None and text(state) not in FINISHED:
                fail_unheld(client, keys, attempt, reason)
        finally:
            client.close()


def fail_unheld(client: redis.Redis, keys: JobKeys, attempt: int, reason: str) -> None:
    """End a job as failed where no worker holds it (any lease goes): its tries are used up, or
    its worker's child was killed."""
    with client.pipeline() as pipe:
        pipe.xadd(keys.events, Event("failed", attempt, {"reason": reason}).fields())  # type: ignore[arg-type]
        pipe.hset(keys.job, "state", "failed")
        pipe.delete(keys.lease)
        pipe.execute()


def register_task(app: Celery) -> Task:
    @app.task(name=TASK, base=ReconstructTask, bind=True)
    def reconstruct(
        self: Task,
        job_id: str,
        attempt: int,
        photos: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> str:
        worker = _child_worker()
        outcome = worker.run(job_id, attempt, photos, options)
        log.info("job %s (try %d): %s", job_id, attempt, outcome)
        return outcome

    return reconstruct


def _child_worker() -> _Worker:
    global _worker
    if _worker is None:
        assert _settings is not None, "the worker's settings were not set"
        _worker = _Worker(_settings, _name)
    return _worker


@worker_process_init.connect
def _start_child(**_: object) -> None:
    """In each new pool child: die with the parent, then build the engine once."""
    if _settings is None:
        return
    _die_with_parent()
    worker = _child_worker()
    try:
        worker.engine  # noqa: B018 (built now, before the first job)
    except Exception as exc:
        # A worker without its engine would fail every job it takes: it stops instead.
        log.error("%s: the engine could not be built, so the worker stops: %s", worker.name, exc)
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def run_worker(settings: Settings, name: str | None = None) -> int:
    """Run a worker until it is stopped (SIGTERM: it finishes its job first; a second one, or
    SIGQUIT, stops at once)."""
    global _settings, _name
    if not settings.broker_url:
        log.error("a worker needs a broker: --broker redis://HOST:6379/0 (AETHERSCAN_BROKER_URL)")
        return 2
    _settings = settings
    _name = name or f"aetherscan@{socket.gethostname()}-{os.getpid()}"
    app = make_celery(settings)
    register_task(app)
    log.info(
        "worker %s: engine %s on %s, jobs from %s, files in %s",
        _name,
        settings.engine,
        settings.device,
        _redacted(settings.broker_url),
        settings.storage_url or settings.data_dir,
    )
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            f"--queues={QUEUE}",
            f"--hostname={_name}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def _redacted(url: str) -> str:
    """A broker URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
