"""The baseline of issue #14: plain pycolmap with its default options, scored like the engine.
Each run in a fresh process; how much the result varies over the runs.

    python benchmarks/plain_pycolmap.py PHOTOS_DIR [GT.json] [--mapper incremental|global|both]
        [--max-image-px 1024] [--runs 3] [--masks MASKS_DIR] [--label NAME] [--json out.json]

Each run: the photos (those the ground truth lists, else every photo in PHOTOS_DIR) are
downscaled to ``--max-image-px`` long side into a temporary folder exactly as the engine does it
(one scale for both axes, Lanczos, JPEG quality 95; their EXIF kept, so COLMAP reads the focal
length itself), then ``pycolmap.extract_features`` on the CPU, ``pycolmap.match_exhaustive`` and
``pycolmap.incremental_mapping`` or ``pycolmap.global_mapping``, all with default options. The
largest model is the result: its cameras go back to the original resolution (K) and OpenCV axes
(``cam_from_world``, which COLMAP uses already) and are scored with
``aetherscan.evaluation.evaluate_reconstruction``, so a photo outside the largest model is a
failure in every score, as for the engine. Without GT.json only the photos placed are counted.

``--masks``: COLMAP's own masks (``ImageReaderOptions.mask_path``) from MASKS_DIR, named as
benchmarks/synthetic_object.py writes them (the photo's name + ``.png``, or its stem + ``.png``).
A run whose process dies (pycolmap aborts on some inputs) counts as 0 placed, AUC@30 0. Wall and
CPU seconds are the child's own, from the first photo read to the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from colmap_repeat import auc_of_placed, photo_names, spread
from subsample_set import mask_for

MAPPERS = ("incremental", "global")
JPEG_QUALITY = 95  # as the engine's copies
EXIF_ORIENTATION = 0x0112


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def downscale(
    source: Path, target: Path, max_px: int, mask: Path | None, mask_target: Path | None
) -> tuple[int, int, float]:
    """The engine's copy of one photo (aetherscan.engines.sfm.loading) and, with mask_target, of
    its mask in COLMAP's convention (0 = ignore); returns the original (width, height, scale)."""
    import numpy as np
    from PIL import Image, ImageOps

    from aetherscan.photos import open_photo

    image = open_photo(source)  # upright, EXIF decoded with it
    exif = image.getexif()
    exif.pop(EXIF_ORIENTATION, None)  # the pixels are upright now
    width, height = image.size
    scale = max(1.0, max(width, height) / max_px)
    size = (max(1, math.floor(width / scale)), max(1, math.floor(height / scale)))
    box = (0.0, 0.0, size[0] * scale, size[1] * scale)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS, box=box)
    image.save(target, quality=JPEG_QUALITY, exif=exif.tobytes())
    if mask_target is not None:  # COLMAP wants a mask for every photo once it has a folder
        keep = np.full((height, width), True)
        if mask is not None:
            with Image.open(mask) as file:
                keep = np.asarray(ImageOps.exif_transpose(file).convert("L")) > 0
        scaled = Image.fromarray(keep.astype(np.uint8) * 255)
        if scaled.size != size:
            scaled = scaled.resize(size, Image.Resampling.BOX, box=box)
            scaled = scaled.point(lambda v: 255 * (v >= 128))
        scaled.save(mask_target)
    return width, height, scale


def one_run(args: argparse.Namespace) -> dict:
    """One plain pycolmap reconstruction in this process, scored; what the parent reads back."""
    import numpy as np
    import pycolmap

    from aetherscan.evaluation import evaluate_reconstruction, load_ground_truth
    from aetherscan.reconstruction import Reconstruction, View

    names = photo_names(args.photos, args.gt)
    start, cpu = time.perf_counter(), _cpu_s()
    stages: dict[str, float] = {}

    def lap(stage: str, mark: list[float]) -> None:
        """Wall and CPU seconds since the mark, under the stage's name; the mark moves on."""
        wall, cpu_s = time.perf_counter(), _cpu_s()
        stages[stage] = round(wall - mark[0], 2)
        stages[f"{stage}_cpu"] = round(cpu_s - mark[1], 2)
        mark[:] = [wall, cpu_s]

    mark = [start, cpu]
    with tempfile.TemporaryDirectory(prefix="plain-pycolmap-") as tmp:
        work = Path(tmp)
        images, masks, out = work / "images", work / "masks", work / "sparse"
        for folder in (images, masks, out):
            folder.mkdir()
        sizes = {}
        for k, name in enumerate(names):
            mask = mask_for(args.masks, name) if args.masks else None
            file = f"{k:05d}.jpg"
            sizes[file] = (
                name,
                *downscale(
                    args.photos / name,
                    images / file,
                    args.max_image_px,
                    mask,
                    masks / f"{file}.png" if args.masks else None,
                ),
            )
        lap("load", mark)
        database = work / "database.db"
        reader = pycolmap.ImageReaderOptions()
        if args.masks:
            reader.mask_path = str(masks)
        pycolmap.extract_features(
            database, images, reader_options=reader, device=pycolmap.Device.cpu
        )
        lap("features", mark)
        pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
        lap("matching", mark)
        if args.mapper == "incremental":
            models = pycolmap.incremental_mapping(database, images, out)
        else:
            models = pycolmap.global_mapping(database, images, out)
        lap("mapping", mark)
    models = sorted(models.values(), key=lambda m: m.num_reg_images(), reverse=True)
    views = []
    if models:
        model = models[0]
        for image in model.images.values():
            if not image.has_pose:
                continue
            name, width, height, scale = sizes[image.name]
            camera = model.camera(image.camera_id)
            cam_from_world = np.eye(4)
            cam_from_world[:3] = image.cam_from_world().matrix()
            views.append(
                View(
                    name=name,
                    width=width,
                    height=height,
                    K=np.diag([scale, scale, 1.0]) @ camera.calibration_matrix(),  # original px
                    cam_from_world=cam_from_world,  # COLMAP's axes are OpenCV's
                    points=np.zeros((0, 3), np.float32),
                    colors=np.zeros((0, 3), np.uint8),
                    confidence=np.zeros(0, np.float32),
                )
            )
    rec = Reconstruction(engine=f"pycolmap {pycolmap.__version__} {args.mapper}", views=views)
    placed_auc = None
    if args.gt is not None:
        truth = load_ground_truth(args.gt)
        scores, placed_auc = evaluate_reconstruction(rec, truth), auc_of_placed(rec, truth)
    else:
        scores = {"photos": len(names), "registered": len(views)}
    return {
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_s": round(_cpu_s() - cpu, 2),
        "load_avg": round(os.getloadavg()[0], 2),
        "models": [m.num_reg_images() for m in models],
        "scores": scores,
        "auc_30_placed": placed_auc,
        "stages_s": stages,
        "pycolmap": pycolmap.__version__,
    }


def summarise(runs: list[dict], label: str, mapper: str, photos: int, has_gt: bool):
    placed = [r["scores"]["registered"] for r in runs]
    auc = [float(r["scores"].get("auc_30", 0.0)) for r in runs]
    lines = [
        f"plain pycolmap, {mapper} mapper",
        "",
        "| run | placed | models | AUC@30 | RRA@5 | RTA@5 | AUC@30 of the placed | wall s | CPU s "
        "| load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, r in enumerate(runs, 1):
        s = r["scores"]
        scored = f"{s.get('auc_30', 0):.3f} | {s.get('rra_5', 0):.3f} | {s.get('rta_5', 0):.3f}"
        placed_auc = "-" if r.get("auc_30_placed") is None else f"{r['auc_30_placed']:.3f}"
        scored += f" | {placed_auc}"
        lines.append(
            f"| {k} | {s['registered']} / {photos} | {r.get('models', [])} "
            f"| {scored if has_gt else '- | - | - | -'} "
            f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load_avg']:.1f} |"
        )
    summary = {
        "set": label,
        "engine": f"plain pycolmap {mapper}",
        "photos": photos,
        "runs": len(runs),
        "failed_runs": sum("error" in r for r in runs),
        "placed_min_median_max": [min(placed), statistics.median(placed), max(placed)],
        "auc_30_min_median_max": [min(auc), statistics.median(auc), max(auc)] if has_gt else None,
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
    }
    auc_text = spread(auc, ".3f") if has_gt else "-"
    lines += [
        "",
        "| set | mapper | runs | placed (min / median / max) | AUC@30 (min / median / max) "
        "| wall s (median) | CPU s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {label} | {mapper} | {len(runs)} | {spread(placed, 'g')} of {photos} | {auc_text} "
        f"| {summary['wall_s_median']:.1f} | {summary['cpu_s_median']:.1f} |",
        "",
    ]
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("gt", type=Path, nargs="?", default=None)
    parser.add_argument("--mapper", choices=[*MAPPERS, "both"], default="both")
    parser.add_argument("--max-image-px", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--masks", type=Path, default=None)
    parser.add_argument("--label", default=None, help="the set's name in the summary row")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one-run", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:  # the child: one run, its result into the file the parent named
        args.one_run.write_text(json.dumps(one_run(args), default=str))
        return

    folder = args.photos.absolute()
    label = args.label or (folder.parent.name if folder.name == "images" else folder.name)
    photos = len(photo_names(args.photos, args.gt))
    child_args = [str(args.photos), *([str(args.gt)] if args.gt else [])]
    child_args += ["--max-image-px", str(args.max_image_px)]
    if args.masks:
        child_args += ["--masks", str(args.masks)]
    mappers = MAPPERS if args.mapper == "both" else (args.mapper,)
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mapper in mappers:
            runs = []
            for k in range(args.runs):
                out = Path(scratch) / f"{mapper}{k}.json"
                command = [sys.executable, __file__, *child_args, "--mapper", mapper]
                started, children = time.perf_counter(), _cpu_children_s()
                done = subprocess.run(
                    [*command, "--one-run", str(out)], capture_output=True, text=True
                )
                if done.returncode == 0 and out.exists():
                    run = json.loads(out.read_text())
                else:  # pycolmap took the process down: a failed run
                    tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                    run = {
                        "error": f"status {done.returncode}: {tail}",
                        "scores": {"photos": photos, "registered": 0},
                        "wall_s": round(time.perf_counter() - started, 2),
                        "load_avg": round(os.getloadavg()[0], 2),
                    }
                run["process_wall_s"] = round(time.perf_counter() - started, 2)
                run["process_cpu_s"] = round(_cpu_children_s() - children, 2)
                run.setdefault("cpu_s", run["process_cpu_s"])
                runs.append(run)
                s = run["scores"]
                print(
                    f"{mapper} run {k + 1}/{args.runs}: {s['registered']}/{photos} placed, "
                    f"AUC@30 {s.get('auc_30', 0):.3f}, {run['wall_s']:.1f} s"
                    + (f" ({run['error']})" if "error" in run else ""),
                    file=sys.stderr,
                )
            lines, summary = summarise(runs, label, mapper, photos, args.gt is not None)
            print("\n".join(lines), flush=True)
            report[mapper] = {"summary": summary, "runs": runs}
    if args.json:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps({**report, "options": options}, indent=1, default=str))


if __name__ == "__main__":
    main()
