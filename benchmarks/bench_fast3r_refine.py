"""What Fast3R's pose refinement (``refine_poses``) gains and costs, by view count.

The network is benchmarks/fast3r_standin.py's stand-in: the true pointmaps of a rendered room
(512 x 384) spoilt the ways Fast3R's are (each view misplaced by ~1 degree and 1 % of the depth,
a smooth 3 % depth error, 2 % outliers, a focal 5 % too long). The same engine runs with and
without refinement on the same maps; errors are against the true cameras (pairwise relative
rotation and translation direction, medians; focal as a share of the true one; the cloud as the
median distance of the depth-map points to the true surface, in metres in a 6 m room). Times
are the refinement's steps, wall seconds, best of ``--repeats``.

    PYTHONPATH=src python benchmarks/bench_fast3r_refine.py --views 4,8,16,32,64
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from fast3r_standin import StandInFast3R, cloud_errors, standin_capture

from aetherscan.engines.base import Photo
from aetherscan.engines.fast3r import Fast3REngine
from aetherscan.geometry.metrics import score_poses

STEPS = ("features", "matching", "bundle_adjustment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="4,8,16,32")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(
        "| views | rotation error deg (PnP -> refined) | translation error deg | focal error "
        "| cloud error m | refine s: features + matching + BA = total | rest of the engine s |"
    )
    print("|---|---|---|---|---|---|---|")
    for views in [int(v) for v in args.views.split(",")]:
        capture = standin_capture(views, arc_deg=min(360.0, 30.0 * (views - 1)))
        with tempfile.TemporaryDirectory() as folder:
            photos = [Photo(p.name, p) for p in capture.write(Path(folder))]
            engine = Fast3REngine(StandInFast3R(capture.outputs), device="cpu")
            plain = engine.reconstruct(photos)
            runs = [engine.reconstruct(photos, refine_poses=True) for _ in range(args.repeats)]
        refined = min(runs, key=lambda r: r.timings_s["refine"])
        before = score_poses([v.cam_from_world for v in plain.views], capture.poses)
        after = score_poses([v.cam_from_world for v in refined.views], capture.poses)
        true_focal = capture.K[0, 0]
        focal = [
            float(np.median([abs(v.K[0, 0] - true_focal) / true_focal for v in r.views]))
            for r in (plain, refined)
        ]
        cloud = [float(np.median(cloud_errors(capture, r))) for r in (plain, refined)]
        steps = " + ".join(f"{refined.timings_s.get(f'refine_{s}', 0.0):.2f}" for s in STEPS)
        rest = plain.timings_s["total"] - plain.timings_s["inference"]
        print(
            f"| {views} | {before.rotation_error_median_deg:.3f} -> "
            f"{after.rotation_error_median_deg:.3f} | {before.translation_error_median_deg:.3f} "
            f"-> {after.translation_error_median_deg:.3f} | {100 * focal[0]:.2f} % -> "
            f"{100 * focal[1]:.2f} % | {cloud[0]:.3f} -> {cloud[1]:.3f} | {steps} = "
            f"{refined.timings_s['refine']:.2f} | {rest:.2f} |"
        )
        print(f"<!-- {views} views: {refined.quality.reasons[0]} -->")


if __name__ == "__main__":
    main()
