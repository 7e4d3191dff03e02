"""What a worker and the server say to each other through Redis, beside the Celery queue.

The queue's messages carry ids and object keys only; everything a job says while it runs goes
through keys of its own (``JobKeys``):

- ``aetherscan:job:<id>`` a hash: ``state`` (queued, running, done, failed, cancelled),
  ``attempt`` (the run the server asked for last) and ``tries`` (runs that workers started);
- ``...:events`` a stream of the job's events, in order (``Event``): Redis keeps it, with its
  persistence on, across restarts of Redis and of the server, until the server has taken the
  job's end;
- ``...:lease`` the name of the worker running it, which the worker renews every third of
  ``worker_lease_s``: a lease that lapses means a worker that died (SIGKILL, the machine lost),
  and the server runs the job again (``aetherscan.server.queued``);
- ``...:cancel`` set by the server to stop the job, with the reason.

Events keep their content exactly (arrays as their bytes, floats through JSON's round trip), so
the WebSocket messages the server makes of them are byte for byte those of a job it runs itself.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from aetherscan.engines.base import Preview, PreviewCamera
from aetherscan.reconstruction import PointCloud

PREFIX = "aetherscan"
QUEUE = "aetherscan"  # the Celery queue the workers take jobs from
TASK = "aetherscan.reconstruct"
# A job's last states, and the kinds of the event that ends its stream.
FINISHED = ("done", "failed", "cancelled")

# kinds of Event: "started" {worker, engine}, "progress" {stage, fraction, message},
# "points" (a PointCloud), "preview" (a Preview), "done" {num_points, views, dropped, quality,
# masks}, "failed" {reason}, "cancelled" {reason}.


@dataclass(frozen=True)
class JobKeys:
    job_id: str

    @property
    def job(self) -> str:
        return f"{PREFIX}:job:{self.job_id}"

    @property
    def events(self) -> str:
        return f"{self.job}:events"

    @property
    def lease(self) -> str:
        return f"{self.job}:lease"

    @property
    def cancel(self) -> str:
        return f"{self.job}:cancel"

    def all(self) -> list[str]:
        return [self.job, self.events, self.lease, self.cancel]


@dataclass
class Event:
    kind: str
    attempt: int
    data: Any  # a dict for JSON kinds, a PointCloud, a Preview

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields."""
        if self.kind == "points":
            body = _cloud_bytes(self.data)
        elif self.kind == "preview":
            preview: Preview = self.data
            head = json.dumps(
                {
                    "message": preview.message,
                    "cameras": [
                        {
                            "name": c.name,
                            "width": c.width,
                            "height": c.height,
                            "K": np.asarray(c.K, float).tolist(),
                            "cam_from_world": np.asarray(c.cam_from_world, float).tolist(),
                        }
                        for c in preview.cameras
                    ],
                }
            ).encode()
            body = struct.pack("<I", len(head)) + head + _cloud_bytes(preview.cloud)
        else:
            body = json.dumps(self.data).encode()
        return {"kind": self.kind.encode(), "attempt": str(self.attempt).encode(), "body": body}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Event:
        kind, attempt, body = fields[b"kind"].decode(), int(fields[b"attempt"]), fields[b"body"]
        data: Any
        if kind == "points":
            data = _cloud_from(body)
        elif kind == "preview":
            (length,) = struct.unpack_from("<I", body)
            head = json.loads(body[4 : 4 + length])
            cameras = [
                PreviewCamera(
                    c["name"],
                    c["width"],
                    c["height"],
                    np.array(c["K"], float),
                    np.array(c["cam_from_world"], float),
                )
                for c in head["cameras"]
            ]
            data = Preview(cameras, _cloud_from(body[4 + length :]), head["message"])
        else:
            data = json.loads(body)
        return cls(kind, attempt, data)


def text(value: object) -> str:
    """A reply of Redis (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _cloud_bytes(cloud: PointCloud) -> bytes:
    return b"".join(
        [
            struct.pack("<I", len(cloud)),
            np.ascontiguousarray(cloud.xyz, "<f4").tobytes(),
            np.ascontiguousarray(cloud.rgb, np.uint8).tobytes(),
            np.ascontiguousarray(cloud.confidence, "<f4").tobytes(),
            np.ascontiguousarray(cloud.view_index, "<i4").tobytes(),
        ]
    )


def _cloud_from(body: bytes) -> PointCloud:
    (n,) = struct.unpack_from("<I", body)
    at = 4

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal at
        array = np.frombuffer(body, dtype, count, at)
        at += array.nbytes
        return array.astype(dtype[1:] if dtype[0] == "<" else dtype)

    xyz = take("<f4", 3 * n).reshape(n, 3)
    rgb = take("u1", 3 * n).reshape(n, 3)
    return PointCloud(xyz, rgb, take("<f4", n), take("<i4", n))


# Taking a job: atomic, so that two workers given the same job (a message delivered again while
# its first worker still runs it) never both run it. KEYS: the job's hash, its lease.
# ARGV: the attempt the message asks for, the worker's name, the lease in ms, max_tries.
CLAIM_SCRIPT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state == 'done' or state == 'failed' or state == 'cancelled' then return 'finished' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'taken' end
local current = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '1')
if tonumber(ARGV[1]) < current then return 'stale' end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[4]) then return 'exhausted' end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'running', 'attempt', ARGV[1])
return 'claimed'
"""

# Renewing a lease, only while it is still this worker's. KEYS: the lease; ARGV: name, ms.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A job's end, told once: the event, the state and the lease's release together, and only by
# the worker that holds the lease. KEYS: hash, lease, events; ARGV: name, state, kind, attempt,
# body.
END_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[3], '*', 'kind', ARGV[3], 'attempt', ARGV[4], 'body', ARGV[5])
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""

# The server's second run of a job whose worker was lost, unless a worker holds it again or it
# ended meanwhile. KEYS: hash, lease; ARGV: the attempt the server saw. Returns the new attempt
# or 0.
RETRY_SCRIPT = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'attempt') or '1') ~= tonumber(ARGV[1]) then return 0 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'queued')
return attempt
"""
