"""The server with a real engine built at start-up from Settings (COLMAP, which runs on CPU), on
the flowerpot photos: the contract flow end to end. Skipped where the engine is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_kit import RunningServer, make_settings

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"

pytestmark = pytest.mark.slow


def test_colmap_engine_over_the_websocket(tmp_path):
    settings = make_settings(tmp_path, engine="colmap", colmap_max_image_px=320)
    photos = {path.name: path.read_bytes() for path in sorted(FLOWERPOT.glob("*.jpg"))}
    with RunningServer(settings, engine=None) as server, server.connect() as client:
        client.send({"type": "hello", "features": ["job", "progress", "cameras"]})
        assert client.receive()["engine"] == "colmap"
        client.upload(photos)
        client.send({"type": "upload_complete", "count": len(photos)})
        messages = client.receive_until("reconstruction_complete", timeout_s=300)
        status = server.http.get(f"/api/jobs/{messages[-1]['job_id']}").json()
    kinds = [m["type"] for m in messages]
    assert "error" not in kinds, [m for m in messages if m["type"] == "error"]
    assert "points" in kinds and kinds.index("points") < kinds.index("cameras"), messages[-3:]
    sent = sum(len(m["data"]) for m in messages if m["type"] == "points")
    assert messages[-1]["total_points"] == sent > 0
    cameras = messages[-2]["cameras"]
    assert len(cameras) >= 2
    assert status["state"] == "done" and status["num_points"] == sent
