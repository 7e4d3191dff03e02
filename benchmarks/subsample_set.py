"""Make a harder set from one with ground truth: fewer photos, wider baselines.

    python benchmarks/subsample_set.py PHOTOS_DIR GT.json OUT_DIR --step-deg 45 [--first NAME]
    python benchmarks/subsample_set.py PHOTOS_DIR GT.json OUT_DIR --every 2 [--start 1]
    python benchmarks/subsample_set.py PHOTOS_DIR GT.json OUT_DIR --drop a.png b.png
        [--masks MASKS_DIR]

writes OUT_DIR/images/ (symbolic links to the kept photos), OUT_DIR/ground_truth.json (their
cameras, unchanged) and, with ``--masks``, OUT_DIR/masks/ (links to the kept photos' masks, named
as in MASKS_DIR: the photo's name + ``.png``, or its stem + ``.png``). ``--drop`` applies first.

``--every K`` keeps every K-th photo in the ground truth's order, from ``--start``. ``--step-deg``
places the cameras on the ring they lie on (a plane and a circle fitted to their centres), then
keeps, for each angle ``first + m * step`` around the ring, the photo nearest to it if it lies
within half a step, listed in ring order; without ``--first`` the start that fills the most
angles most closely is chosen. For example the Middlebury temple
ring (16 photos, most of them 23 degrees apart) at 45 degrees:

    python benchmarks/temple_ring_to_json.py -o temple_gt.json
    python benchmarks/subsample_set.py ../shared/data/temple_ring temple_gt.json \\
        /tmp/sets/temple_ring_45 --step-deg 45
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def centre_of(camera: dict) -> np.ndarray:
    R, t = np.asarray(camera["R"], float), np.asarray(camera["t"], float)
    return -R.T @ t


def ring_azimuths_deg(centres: np.ndarray) -> np.ndarray:
    """(N,) angle of each camera centre (N, 3) around the axis of the circle they lie near, in
    degrees, 0 at the first camera and growing towards the second."""
    mean = centres.mean(0)
    _, spread, axes = np.linalg.svd(centres - mean)
    if spread[1] < 1e-6 * max(spread[0], 1e-12):
        raise ValueError("the camera centres lie on a line, not around a ring")
    xy = (centres - mean) @ axes[:2].T  # (N, 2) in the ring's plane
    # Circle through the points, least squares in the algebraic form x^2 + y^2 + D x + E y + F = 0.
    A = np.column_stack([xy, np.ones(len(xy))])
    D, E, _ = np.linalg.lstsq(A, -(xy**2).sum(1), rcond=None)[0]
    rel = xy - [-D / 2, -E / 2]
    angles = np.degrees(np.arctan2(rel[:, 1], rel[:, 0]))
    angles = (angles - angles[0]) % 360.0
    if len(angles) > 1 and angles[1] > 180.0:  # count in the direction of the second photo
        angles = (-angles) % 360.0
    return angles


def pick_by_step(azimuths_deg: np.ndarray, step_deg: float, first: int | None = None) -> list[int]:
    """Indices of the photos nearest to first + 0, step, 2 step, ... degrees (each within half a
    step), in ring order. ``first``: the photo at 0; None tries each photo and keeps the choice
    that fills the most angles with the least summed distance to them."""
    best: tuple[int, float, list[int]] | None = None
    for start in range(len(azimuths_deg)) if first is None else [first]:
        relative = (azimuths_deg - azimuths_deg[start]) % 360.0
        kept, miss = [], 0.0
        for m in range(int(np.ceil(360.0 / step_deg - 1e-9))):
            off = np.abs((relative - m * step_deg + 180.0) % 360.0 - 180.0)
            off[kept] = np.inf
            nearest = int(np.argmin(off))
            if off[nearest] <= step_deg / 2:
                kept.append(nearest)
                miss += off[nearest]
        if best is None or (-len(kept), miss) < (-len(best[2]), best[1]):
            best = (len(kept), miss, kept)
    return best[2]


def mask_for(masks: Path, name: str) -> Path | None:
    for candidate in (masks / f"{name}.png", masks / f"{Path(name).stem}.png"):
        if candidate.exists():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("gt", type=Path)
    parser.add_argument("out", type=Path)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--every", type=int, help="keep every K-th photo")
    how.add_argument("--step-deg", type=float, help="keep photos this far apart around the ring")
    parser.add_argument("--start", type=int, default=0, help="with --every: the first one kept")
    parser.add_argument("--first", help="with --step-deg: the photo at 0 degrees (default: first)")
    parser.add_argument("--drop", nargs="+", default=[], metavar="NAME", help="photos to leave out")
    parser.add_argument("--masks", type=Path, help="the photos' masks, to link along")
    args = parser.parse_args()

    truth = json.loads(args.gt.read_text())
    cameras = [c for c in truth["cameras"] if c["name"] not in set(args.drop)]
    unknown = set(args.drop) - {c["name"] for c in truth["cameras"]}
    if unknown:
        parser.error(f"--drop names photos the ground truth does not list: {sorted(unknown)}")
    rule = f" dropped {args.drop}" if args.drop else ""
    try:
        azimuths = ring_azimuths_deg(np.array([centre_of(c) for c in cameras]))
    except (KeyError, ValueError):  # photos without poses, or too few to make a ring
        azimuths = np.full(len(cameras), np.nan)
    keep = list(range(len(cameras)))
    if args.every:
        keep = keep[args.start :: args.every]
        rule += f" every {args.every} from {args.start}"
    elif args.step_deg:
        if np.isnan(azimuths).any():
            parser.error("--step-deg needs at least three photos with poses around a ring")
        names = [c["name"] for c in cameras]
        if args.first and args.first not in names:
            parser.error(f"--first {args.first}: not among the photos")
        first = names.index(args.first) if args.first else None
        keep = pick_by_step(azimuths, args.step_deg, first)
        rule += f" {args.step_deg:g} degree steps from {names[keep[0]]}"
    cameras, azimuths = [cameras[i] for i in keep], azimuths[keep]
    if len(cameras) < 2:
        parser.error(f"only {len(cameras)} photo(s) left")

    for folder in ("images", "masks"):  # a set made here before: its links go
        if (args.out / folder).is_dir():
            for old in (args.out / folder).iterdir():
                if old.is_symlink():
                    old.unlink()
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    if args.masks:
        (args.out / "masks").mkdir(exist_ok=True)
    for camera in cameras:
        os.symlink((args.photos / camera["name"]).resolve(), args.out / "images" / camera["name"])
        mask = mask_for(args.masks, camera["name"]) if args.masks else None
        if mask:
            os.symlink(mask.resolve(), args.out / "masks" / mask.name)
    source = f"{truth.get('source', args.gt)}; subsample_set.py:{rule}"
    (args.out / "ground_truth.json").write_text(
        json.dumps({"source": source, "cameras": cameras}, indent=1)
    )
    print(f"kept {len(cameras)} photos in {args.out} (angle around the ring of all of them):")
    for camera, azimuth in zip(cameras, azimuths, strict=True):
        print(f"  {camera['name']}  {azimuth:6.1f} deg")


if __name__ == "__main__":
    main()
