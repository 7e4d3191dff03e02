"""Time the COLMAP engine stage by stage, in wall and CPU seconds, and score it when ground truth
is given: the numbers in docs/benchmarks.md.

    python benchmarks/colmap_benchmark.py PHOTOS_DIR [--gt GT.json] [--max-image-px 1024]
        [--matching auto|exhaustive|pruned] [--no-densify] [--json out.json]

CPU seconds count this process (dense stereo) and the SfM worker; on a shared machine they are
steadier than wall time. ``load_avg`` is the 1-minute load average when the run ended.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

from aetherscan.engines.base import Photo
from aetherscan.engines.colmap import ColmapEngine
from aetherscan.evaluation import evaluate_reconstruction, load_ground_truth

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic"}


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--gt", type=Path, default=None)
    parser.add_argument("--max-image-px", type=int, default=1024)
    parser.add_argument("--matching", choices=["auto", "exhaustive", "pruned"], default="auto")
    parser.add_argument("--no-densify", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the engine's statistics
    truth = load_ground_truth(args.gt) if args.gt else None
    if truth:
        photos = [Photo(c.name, args.photos / c.name) for c in truth]
    else:
        files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        photos = [Photo(p.name, p) for p in files]
    engine = ColmapEngine(args.max_image_px, matching=args.matching, densify=not args.no_densify)
    start = time.perf_counter()
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    rec = engine.reconstruct(photos)
    result = {
        "photos": len(photos),
        "registered": len(rec.views),
        "points": rec.num_points,
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_sfm_worker_s": round(_cpu(resource.RUSAGE_CHILDREN) - children, 2),
        "cpu_this_process_s": round(_cpu(resource.RUSAGE_SELF) - own, 2),
        "stages_s": rec.timings_s,
        "load_avg": os.getloadavg()[0],
        "options": vars(args) | {"photos": str(args.photos), "gt": str(args.gt), "json": None},
        "dropped": [d.name for d in rec.dropped],
        "quality": rec.quality.to_json(),
        "masks": rec.masks,
    }
    if truth:
        result["scores"] = evaluate_reconstruction(rec, truth)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
