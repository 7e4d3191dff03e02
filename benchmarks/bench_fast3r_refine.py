"""What Fast3R's pose refinement (``refine_poses``) gains and costs, by view count.

The network is benchmarks/fast3r_standin.py's stand-in: the true pointmaps of a rendered room
(512 x 384) spoilt the ways Fast3R's are (each view misplaced by ~1 degree and 1 % of the depth,
a smooth 3 % depth error, 2 % outliers, a focal 5 % too long), one draw of that noise per seed.
The same engine runs with and without refinement on the same maps; errors are against the true
cameras (pairwise relative rotation and translation direction, medians over the pairs; the
focal length as a share of the true one; the cloud as the median distance of the depth-map
points to the true surface, in metres in a 6 m room). A row gives the median over the seeds and
[the best, the worst]; times are the refinement's steps in wall seconds, medians over the seeds.

    PYTHONPATH=src python benchmarks/bench_fast3r_refine.py --views 4,8,16,32,64 --seeds 0,1,2
    PYTHONPATH=src python benchmarks/bench_fast3r_refine.py --views 16 --rotation-deg 3 --shift 0.03
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from fast3r_standin import Noise, StandInFast3R, cloud_errors, standin_capture

from aetherscan.engines.base import Photo
from aetherscan.engines.fast3r import Fast3REngine
from aetherscan.geometry.metrics import score_poses

STEPS = ("features", "matching", "bundle_adjustment")


def measure(views: int, noise: Noise) -> dict[str, tuple[float, float] | float]:
    """Errors (PnP, refined) and the refinement's times for one draw of the noise."""
    capture = standin_capture(views, noise, arc_deg=min(360.0, 30.0 * (views - 1)))
    with tempfile.TemporaryDirectory() as folder:
        photos = [Photo(p.name, p) for p in capture.write(Path(folder))]
        engine = Fast3REngine(StandInFast3R(capture.outputs), device="cpu")
        plain = engine.reconstruct(photos)
        refined = engine.reconstruct(photos, refine_poses=True)
    scores = [
        score_poses([v.cam_from_world for v in r.views], capture.poses) for r in (plain, refined)
    ]
    true_focal = capture.K[0, 0]
    out: dict[str, tuple[float, float] | float] = {
        "rotation": tuple(s.rotation_error_median_deg for s in scores),
        "translation": tuple(s.translation_error_median_deg for s in scores),
        "focal": tuple(
            100 * float(np.median([abs(v.K[0, 0] - true_focal) / true_focal for v in r.views]))
            for r in (plain, refined)
        ),
        "cloud": tuple(float(np.median(cloud_errors(capture, r))) for r in (plain, refined)),
        "refine": refined.timings_s["refine"],
        "rest": plain.timings_s["total"] - plain.timings_s["inference"],
        "declined": float(refined.quality.reasons[0].startswith("the poses were not refined")),
    }
    for step in STEPS:
        out[step] = refined.timings_s.get(f"refine_{step}", 0.0)
    return out


def spread(runs: list[dict], key: str, digits: int) -> str:
    """'PnP -> refined' as median [best, worst] over the runs."""
    parts = []
    for side in (0, 1):
        values = np.array([run[key][side] for run in runs])
        parts.append(
            f"{np.median(values):.{digits}f} [{values.min():.{digits}f}, {values.max():.{digits}f}]"
        )
    return " -> ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="4,8,16,32")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rotation-deg", type=float, default=Noise.rotation_deg)
    parser.add_argument("--shift", type=float, default=Noise.shift)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, seeds {seeds}, "
        f"maps misplaced by {args.rotation_deg} deg rms per axis and {args.shift:.0%} of the depth"
    )
    print(
        "| views | rotation error deg (PnP -> refined) | translation error deg | focal error % "
        "| cloud error m | declined | refine s: features + matching + BA = total | rest s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for views in [int(v) for v in args.views.split(",")]:
        runs = [
            measure(views, Noise(rotation_deg=args.rotation_deg, shift=args.shift, seed=seed))
            for seed in seeds
        ]
        median = {k: float(np.median([r[k] for r in runs])) for k in (*STEPS, "refine", "rest")}
        steps = " + ".join(f"{median[s]:.2f}" for s in STEPS)
        declined = int(sum(r["declined"] for r in runs))
        print(
            f"| {views} | {spread(runs, 'rotation', 3)} | {spread(runs, 'translation', 3)} | "
            f"{spread(runs, 'focal', 2)} | {spread(runs, 'cloud', 3)} | {declined} of "
            f"{len(runs)} | {steps} = {median['refine']:.2f} | {median['rest']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
