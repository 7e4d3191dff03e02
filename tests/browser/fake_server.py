"""A stand-in for the AetherScan server, for working on the viewer without an engine.

It serves ``web/`` like the real server (the page at ``/``, three.js under ``/vendor/three/``)
and speaks the WebSocket protocol of docs/protocol.md with a synthetic scene: a pot with a
plant seen by a ring of cameras. Run it with::

    PYTHONPATH=src python tests/browser/fake_server.py --port 8001 [--points-per-view 20000]

The browser test itself runs against the real server (``aetherscan.server.app``); this module
also serves the in-page tests of the viewer's modules, which need no engine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import secrets
import struct
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

WEB = Path(__file__).resolve().parents[2] / "web"
CONFIDENCE_LEVELS = 64


def encode_point_frame(
    xyz: np.ndarray, rgb: np.ndarray, confidence: np.ndarray, view_index: int
) -> bytes:
    """One binary point frame ("AEP1", docs/protocol.md), points sorted by confidence."""
    order = np.argsort(-confidence, kind="stable")
    xyz, rgb, confidence = xyz[order], rgb[order], confidence[order]
    n = len(xyz)
    origin = xyz.min(axis=0) if n else np.zeros(3, np.float32)
    extent = (xyz.max(axis=0) - origin) if n else np.zeros(3, np.float32)
    step = np.where(extent > 0, extent / 65535, 1.0).astype(np.float32)
    quantized = np.clip(np.rint((xyz - origin) / step), 0, 65535).astype("<u2")
    levels = CONFIDENCE_LEVELS if n else 0
    table = confidence[(np.arange(levels) * n) // max(levels, 1)].astype("<f4")
    r, g, b = (rgb[:, i].astype(np.uint16) for i in range(3))
    rgb565 = ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).astype("<u2")
    header = b"AEP1" + struct.pack("<III", n, view_index, levels)
    header += origin.astype("<f4").tobytes() + step.astype("<f4").tobytes()
    return header + table.tobytes() + quantized.tobytes() + rgb565.tobytes()


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """cam_from_world (OpenCV axes) of a camera at ``centre`` looking at ``target``, y down."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = -rotation @ centre
    return pose


def synthetic_scene(num_views: int, points_per_view: int, seed: int = 0):
    """Cameras on a ring around a pot with a plant, and each view's points with confidence."""
    rng = np.random.default_rng(seed)
    target = np.array([0.0, 0.0, 3.0])
    width, height, focal = 640, 480, 560.0
    K = [[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]
    cameras, views = [], []
    for i in range(num_views):
        angle = 2 * np.pi * i / num_views
        centre = target + 3.0 * np.array([-np.sin(angle), -0.25 * (i > 0), -np.cos(angle)])
        cameras.append(
            {
                "name": f"view{i:02d}.jpg",
                "width": width,
                "height": height,
                "K": K,
                "cam_from_world": look_at(centre, target).tolist(),
            }
        )
        n = points_per_view
        part = rng.random(n)
        theta = rng.uniform(0, 2 * np.pi, n)
        # The pot: a slightly conical terracotta cylinder (y down: its rim is at y = -0.1).
        height_on_pot = rng.uniform(0, 1, n)
        radius = 0.45 + 0.15 * (1 - height_on_pot)
        pot = np.stack(
            [radius * np.cos(theta), 0.8 - 0.9 * (1 - height_on_pot), radius * np.sin(theta)], 1
        )
        # The plant: a ball of leaves above the pot.
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        plant = direction * rng.uniform(0.3, 0.55, (n, 1)) + np.array([0.0, -0.5, 0.0])
        is_pot = part < 0.55
        xyz = np.where(is_pot[:, None], pot, plant) + target
        shade = rng.uniform(0.75, 1.0, (n, 1))
        colour = np.where(is_pot[:, None], [[190, 95, 55]], [[60, 150, 60]]) * shade
        confidence = 1.0 + rng.lognormal(1.0, 0.8, n)
        # A few confident-looking outliers would spoil the fit; real ones have low confidence.
        stray = rng.random(n) < 0.02
        xyz[stray] += rng.normal(scale=2.0, size=(int(stray.sum()), 3))
        confidence[stray] = 1.0 + rng.random(int(stray.sum()))
        views.append(
            (xyz.astype(np.float32), colour.astype(np.uint8), confidence.astype(np.float32))
        )
    return cameras, views


def create_fake_app(num_views: int = 8, points_per_view: int = 20000, delay_s: float = 0.1):
    app = FastAPI(title="AetherScan fake server (viewer development)")
    jobs: dict[str, dict] = {}

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/jobs/{job_id}")
    async def job(job_id: str) -> Response:
        if job_id not in jobs:
            return Response(status_code=404)
        return Response(json.dumps(jobs[job_id]["state"]), media_type="application/json")

    @app.get("/api/jobs/{job_id}/points")
    async def job_points(job_id: str) -> Response:
        if job_id not in jobs:
            return Response(status_code=404)
        return Response(b"".join(jobs[job_id]["frames"]), media_type="application/octet-stream")

    @app.get("/api/jobs/{job_id}/files/scene.ply")
    async def job_ply(job_id: str) -> Response:
        return Response(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        features: set[str] = set()
        received: list[str] = []
        try:
            while True:
                message = json.loads(await socket.receive_text())
                kind = message.get("type")
                if kind == "hello":
                    features = set(message.get("features", []))
                    await socket.send_json(
                        {
                            "type": "welcome",
                            "protocol": 1,
                            "engine": "fake",
                            "features": sorted(features),
                            "limits": {"max_photos_per_job": 500},
                        }
                    )
                elif kind == "ping":
                    await socket.send_json({"type": "pong"})
                elif kind == "image_data":
                    name = message.get("filename", "image.jpg")
                    try:
                        payload = base64.b64decode(message["data"].split(",", 1)[1])
                        Image.open(io.BytesIO(payload)).verify()
                    except Exception:
                        await socket.send_json(
                            {"type": "error", "message": f"{name} is not an image we can read"}
                        )
                        continue
                    received.append(name)
                    await socket.send_json(
                        {"type": "image_received", "status": "saved", "filename": name}
                    )
                elif kind == "upload_complete":
                    photos, received = received, []
                    if len(photos) < 2:
                        await socket.send_json(
                            {"type": "error", "message": "Too few photos: at least 2 are needed."}
                        )
                        continue
                    await run_job(socket, features, jobs, num_views, points_per_view, delay_s)
        except WebSocketDisconnect:
            pass

    app.mount("/vendor/three", StaticFiles(directory=WEB / "node_modules" / "three"))
    app.mount("/", StaticFiles(directory=WEB))
    return app


async def run_job(socket, features, jobs, num_views, points_per_view, delay_s) -> None:
    job_id = secrets.token_urlsafe(16)
    progress = "progress" in features
    if progress:
        await socket.send_json({"type": "queued", "position": 1})
        for stage in ("load", "inference", "poses"):
            await socket.send_json({"type": "progress", "stage": stage, "fraction": 0.2})
            await asyncio.sleep(delay_s)
    cameras, views = synthetic_scene(num_views, points_per_view)
    if "cameras" in features:
        await socket.send_json({"type": "cameras", "cameras": cameras})
    frames = []
    total = 0
    for index, (xyz, rgb, confidence) in enumerate(views):
        if "binary_points" in features:
            frame = encode_point_frame(xyz, rgb, confidence, index)
            frames.append(frame)
            await socket.send_bytes(frame)
        else:
            for start in range(0, len(xyz), 5000):
                chunk = slice(start, start + 5000)
                data = [
                    {
                        "x": float(x),
                        "y": float(y),
                        "z": float(z),
                        "r": int(r),
                        "g": int(g),
                        "b": int(b),
                    }
                    for (x, y, z), (r, g, b) in zip(xyz[chunk], rgb[chunk], strict=True)
                ]
                await socket.send_json({"type": "points", "data": data})
        total += len(xyz)
        if progress:
            fraction = 0.5 + 0.5 * (index + 1) / len(views)
            await socket.send_json({"type": "progress", "stage": "points", "fraction": fraction})
        await asyncio.sleep(delay_s)
    complete = {"type": "reconstruction_complete", "total_points": total}
    if "job" in features:
        downloads = {"ply": f"/api/jobs/{job_id}/files/scene.ply"}
        complete |= {"job_id": job_id, "downloads": downloads}
        state = {"job_id": job_id, "state": "done", "num_points": total, "downloads": downloads}
        jobs[job_id] = {"state": state | {"views": cameras}, "frames": frames}
    await socket.send_json(complete)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--points-per-view", type=int, default=20000)
    args = parser.parse_args()
    uvicorn.run(create_fake_app(args.views, args.points_per_view), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
