"""Frames from a video (issue 13, aetherscan.video): how long a 30 s 1080p clip takes to
sample on 2 cores, and whether the frames chosen are sharp and cover every view.

The clip is made from a photo set (tests/video_kit.py: a pan across each photo in turn, cut to
the next, every ``--blur-every``-th frame smeared by a 25 px motion blur), at 1920x1080 and
30 fps, as MPEG-4 Part 2 in MP4 (what OpenCV writes here; phones write H.264 or HEVC, which
decode more slowly). Reported: the seconds of ``sample_video`` (best of ``--repeats``), the
frames chosen, how many of them are blurred ones (goal 0), and the photos whose pan has no
frame chosen (goal none).

    PYTHONPATH=src python benchmarks/bench_video.py --photos ../shared/data/flowerpot/images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from video_kit import photo_pan_clip

from aetherscan.video import sample_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=Path("tests/fixtures/flowerpot"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--blur-every", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        clip = photo_pan_clip(
            Path(folder) / "clip.mp4",
            photos,
            seconds_per_photo=args.seconds / len(photos),
            blur_every=args.blur_every,
            size=(1920, 1080),
        )
        made_s = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sampled = sample_video(clip.path)
            times.append(time.perf_counter() - start)
        chosen = [clip.frame_at(frame.time_s) for frame in sampled.frames]
        covered = {clip.photo_of_frame[index] for index in chosen}
        report = {
            "clip": f"{len(clip.photo_of_frame) / clip.fps:.1f} s, 1920x1080, {clip.fps:g} fps, "
            f"{clip.path.stat().st_size / 1e6:.1f} MB ({len(photos)} photos, made in {made_s:.0f} s)",
            "sample_seconds_best": round(min(times), 2),
            "sample_seconds": [round(t, 2) for t in times],
            "frames_chosen": len(chosen),
            "blurred_frames_in_clip": len(clip.blurred),
            "blurred_frames_chosen": len(set(chosen) & clip.blurred),
            "photos_without_a_frame": sorted(set(range(len(photos))) - covered),
            "notes": sampled.notes,
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
