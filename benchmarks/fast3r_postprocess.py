"""Time Fast3REngine's work around the network (decode, preprocess, focal, PnP, alignment, points).

The network is replaced by a module that returns exact pointmaps of known cameras instantly, so
the timings are the engine's own cost per view; the pose error shows the result is still right.

    PYTHONPATH=src python benchmarks/fast3r_postprocess.py --views 8 --image-size 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aetherscan.engines.base import Photo
from aetherscan.engines.fast3r import Fast3REngine
from aetherscan.geometry.camera import invert_pose, pose_matrix, transform_points

FOCAL_PX = 400.0


def _cam_from_world(i: int) -> np.ndarray:
    angle = np.deg2rad(4.0 * i)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return pose_matrix(R, [-0.1 * i, 0.0, 0.02 * i])


class ExactPointmaps(torch.nn.Module):
    def forward(self, images, image_ids=None):
        preds = []
        for i, image in enumerate(images):
            _, _, h, w = image.shape
            v, u = np.mgrid[0:h, 0:w].astype(np.float64)
            depth = 4.0 + 0.5 * np.sin(u / 40.0) * np.cos(v / 30.0)
            cam = np.stack(
                [(u - w / 2) / FOCAL_PX * depth, (v - h / 2) / FOCAL_PX * depth, depth], -1
            )
            world = transform_points(invert_pose(_cam_from_world(i)), cam)
            conf = 1.0 + 5.0 * np.exp(-((u - w / 2) ** 2 + (v - h / 2) ** 2) / w**2)
            preds.append(
                {
                    "pts3d_in_other_view": torch.tensor(world, dtype=torch.float32)[None],
                    "conf": torch.tensor(conf, dtype=torch.float32)[None],
                    "pts3d_local": torch.tensor(0.5 * cam, dtype=torch.float32)[None],
                    "conf_local": torch.tensor(conf, dtype=torch.float32)[None],
                }
            )
        return preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=512, choices=[512, 384, 224])
    parser.add_argument("--photo-size", type=int, nargs=2, default=[1600, 1200], metavar=("W", "H"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        photos = []
        for i in range(args.views):
            path = Path(tmp) / f"{i:04d}.jpg"
            pixels = rng.integers(0, 256, (args.photo_size[1], args.photo_size[0], 3), np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
            photos.append(Photo(path.name, path))
        engine = Fast3REngine(ExactPointmaps(), device="cpu", image_size=args.image_size)
        started = time.perf_counter()
        result = engine.reconstruct(photos)
        total = time.perf_counter() - started
    errors = [
        np.abs(view.cam_from_world - _cam_from_world(i)).max()
        for i, view in enumerate(result.views)
    ]
    per_view = {k: v / args.views * 1000 for k, v in result.timings_s.items()}
    print(
        f"{args.views} views, {args.photo_size[0]}x{args.photo_size[1]} JPEG -> {args.image_size}: "
        f"total {total:.2f} s; per view ms: "
        + ", ".join(f"{k} {v:.0f}" for k, v in per_view.items() if k != "inference")
        + f"; max pose error {max(errors):.1e}; torch threads {torch.get_num_threads()}"
    )


if __name__ == "__main__":
    main()
