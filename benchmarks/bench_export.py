"""How long each export takes for a large synthetic reconstruction.

    PYTHONPATH=src python benchmarks/bench_export.py [--points 1000000] [--views 20]

Prints one line per format: seconds (best of --repeat runs) and the size written. Photos are
left out (no copying), so the numbers are the writers' own cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from aetherscan.export import FORMATS, export
from aetherscan.reconstruction import Reconstruction, View


def synthetic_reconstruction(num_points: int, num_views: int, seed: int = 0) -> Reconstruction:
    """Views on a circle around a cloud of points in front of each of them."""
    rng = np.random.default_rng(seed)
    views = []
    for i in range(num_views):
        angle = 2 * np.pi * i / num_views
        R = np.array(
            [[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]]
        )
        cam_from_world = np.eye(4)
        cam_from_world[:3, :3] = R
        cam_from_world[:3, 3] = [0, 0, 3]
        n = num_points // num_views
        # Points in front of the camera, inside its field of view.
        cam = np.stack(
            [rng.uniform(-0.6, 0.6, n), rng.uniform(-0.45, 0.45, n), rng.uniform(2, 4, n)], 1
        )
        world = (cam - cam_from_world[:3, 3]) @ R
        views.append(
            View(
                name=f"photo_{i:03d}.jpg",
                width=4032,
                height=3024,
                K=np.array([[3000.0, 0, 2016], [0, 3000, 1512], [0, 0, 1]]),
                cam_from_world=cam_from_world,
                points=world.astype(np.float32),
                colors=rng.integers(0, 256, (n, 3), dtype=np.uint8),
                confidence=rng.uniform(1, 10, n).astype(np.float32),
                depth=np.linspace(2, 4, 384 * 512, dtype=np.float32).reshape(384, 512),
                depth_confidence=rng.uniform(1, 10, (384, 512)).astype(np.float32),
                depth_K=np.array([[381.0, 0, 256], [0, 381, 192], [0, 0, 1]]),
            )
        )
    return Reconstruction("synthetic", views)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    args = parser.parse_args()
    reconstruction = synthetic_reconstruction(args.points, args.views)
    print(f"{reconstruction.num_points} points, {len(reconstruction.views)} views")
    print(f"{'format':12s} {'seconds':>8s} {'MB':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            times = []
            for run in range(args.repeat):
                path = Path(tmp) / f"{fmt}-{run}" / FORMATS[fmt].filename
                start = time.perf_counter()
                export(reconstruction, fmt, path)
                times.append(time.perf_counter() - start)
            print(f"{fmt:12s} {min(times):8.3f} {_size(path) / 1e6:8.1f}")


if __name__ == "__main__":
    main()
