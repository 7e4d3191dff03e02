"""A video wherever photos are: REST (its frames become the job's photos), and the CLI end to
end with the COLMAP engine; clips made in the tests from the flowerpot photos (video_kit.py)."""

from __future__ import annotations

import re

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes
from video_kit import photo_pan_clip

from aetherscan.cli import main

FRAME_NAME = re.compile(r"^pot-t\d{4}\.\d{3}s\.jpg$")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return photo_pan_clip(tmp_path_factory.mktemp("clip") / "pot.mp4", blur_every=4)


def post(server: RunningServer, files: dict[str, bytes]):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files.items()]
    return server.http.post("/api/jobs", files=parts)


def test_a_video_posted_as_a_photo_gives_its_frames_named_by_time(tmp_path, clip):
    engine = ScriptedEngine(points_per_view=100)
    with RunningServer(make_settings(tmp_path), engine) as server:
        answer = post(server, {"pot.mp4": clip.path.read_bytes(), "extra.jpg": photo_bytes()})
        assert answer.status_code == 201, answer.text
        names = [photo["name"] for photo in answer.json()["photos"]]
        frames = [name for name in names if name != "extra.jpg"]
        assert len(frames) >= 8 and all(FRAME_NAME.match(name) for name in frames), names
        times = [float(name[5:13]) for name in frames]
        assert times == sorted(times)
        assert not {clip.frame_at(t) for t in times} & clip.blurred
        status = server.wait_for_state(answer.json()["job_id"])
        assert status["state"] == "done" and len(status["views"]) == len(names)
        assert engine.calls[-1] == names


def test_a_damaged_or_too_big_video_is_refused_with_a_sentence_and_leaves_no_job(tmp_path, clip):
    data = clip.path.read_bytes()
    with RunningServer(make_settings(tmp_path, max_video_mb=0.01), ScriptedEngine()) as server:
        answer = post(server, {"pot.mp4": data})
        assert answer.status_code == 413
        assert "max_video_mb" in answer.json()["detail"]
    with RunningServer(make_settings(tmp_path), ScriptedEngine()) as server:
        answer = post(server, {"cut.mp4": data[: len(data) // 2], "b.jpg": photo_bytes()})
        assert answer.status_code == 422
        assert "cut: this file cannot be read as a video" in answer.json()["detail"]
        for _ in range(2):  # nothing counts against the client's limit (2 unfinished jobs)
            assert post(server, {"a.jpg": photo_bytes(), "b.jpg": photo_bytes()}).status_code == 201


@pytest.mark.slow
def test_reconstruct_takes_a_clip_end_to_end_with_colmap(tmp_path, clip, capsys):
    out = tmp_path / "scene.ply"
    code = main(
        [
            *("reconstruct", str(clip.path), "-o", str(out), "--engine", "colmap"),
            *("--cameras", str(tmp_path / "cameras.json")),
        ]
    )
    said = capsys.readouterr().err
    assert code == 0, said
    import json

    cameras = json.loads((tmp_path / "cameras.json").read_text())
    names = [camera["name"] for camera in cameras["cameras"]]
    assert len(names) >= 8 and all(FRAME_NAME.match(name) for name in names), names
    assert out.stat().st_size > 10_000
