"""Run the COLMAP engine several times on one set, each run in a fresh process, and report how
much the result varies: photos placed, AUC@30, the engine's own verdict, time.

    python benchmarks/colmap_repeat.py PHOTOS_DIR [GT.json] [--runs 5] [--max-image-px 1024]
        [--matching auto|exhaustive|pruned] [--densify] [--masks MASKS_DIR] [--label NAME]
        [--engine-path SRC_DIR] [--json out.json]

Without GT.json every photo in PHOTOS_DIR is given to the engine and only the photos placed are
counted (AUC@30 shows as ``-``).
``--engine-path``: the ``src`` folder of another checkout, put first on the runs' PYTHONPATH, so
that they use its engine (an older one, say: ``git worktree add /tmp/aether_old COMMIT``); each
run records the ``aetherscan/__init__.py`` it imported, printed once. An engine from before the
verdict (issue #14) has no ``Reconstruction.quality``: its runs say ``n/a``; its photos take no
masks.

Poses only by default (``--no-densify``): dense stereo does not move them and costs the most.
``--masks``: each photo whose mask is in MASKS_DIR (the photo's name + ``.png``, or its stem +
``.png``, as benchmarks/synthetic_object.py writes them) is given to the engine with it.
A table of the runs goes to stdout, then one summary row for docs/benchmarks.md. Wall and CPU
seconds cover ``engine.reconstruct`` only (not the start of the process); CPU counts the run's
process and its SfM worker. A run that fails counts as zero photos placed and AUC@30 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from subsample_set import mask_for

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}  # colmap_benchmark.py


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def one_run(args: argparse.Namespace) -> dict:
    """One reconstruction in this process, scored; what the parent reads back."""
    import aetherscan
    from aetherscan.engines.base import EngineError, Photo
    from aetherscan.engines.colmap import ColmapEngine
    from aetherscan.evaluation import evaluate_reconstruction, load_ground_truth

    truth = load_ground_truth(args.gt) if args.gt else None
    photos = []
    for name in photo_names(args.photos, args.gt):
        mask = mask_for(args.masks, name) if args.masks else None
        # An engine from before #14 has no Photo.mask_path.
        extra = {"mask_path": mask} if mask is not None else {}
        photos.append(Photo(name, args.photos / name, **extra))
    engine = ColmapEngine(args.max_image_px, matching=args.matching, densify=args.densify)
    start = time.perf_counter()
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    try:
        rec, error = engine.reconstruct(photos), None
    except EngineError as exc:
        rec, error = None, str(exc)
    result = {
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_s": round(
            _cpu(resource.RUSAGE_SELF) - own + _cpu(resource.RUSAGE_CHILDREN) - children, 2
        ),
        "load_avg": round(os.getloadavg()[0], 2),
        "masks_given": sum(getattr(p, "mask_path", None) is not None for p in photos),
        "aetherscan_file": aetherscan.__file__,
    }
    if truth is not None:
        result["scores"] = evaluate_reconstruction(rec, truth)
        result["auc_30_placed"] = auc_of_placed(rec, truth)
    else:
        result["scores"] = {"photos": len(photos), "registered": len(rec.views) if rec else 0}
    if rec is None:
        result |= {"error": error, "verdict": "failed", "reasons": [error]}
    else:
        quality = getattr(rec, "quality", None)  # none before #14
        result |= {
            "verdict": quality.verdict if quality else "n/a",
            "reasons": quality.reasons if quality else [],
            "masks": getattr(rec, "masks", "n/a"),
            "dropped": [d.name for d in rec.dropped],
            "stages_s": rec.timings_s,
        }
    return result


def auc_of_placed(rec, truth: list) -> float | None:
    """AUC@30 over the pairs of placed photos only: were the poses given right? (None: fewer
    than two placed.) The main scores count the photos left out as failures as well."""
    from aetherscan.evaluation import evaluate_reconstruction

    placed = {Path(v.name).stem.lower() for v in rec.views} if rec else set()
    kept = [
        c for c in truth if Path(c.name).stem.lower() in placed and c.cam_from_world is not None
    ]
    return float(evaluate_reconstruction(rec, kept)["auc_30"]) if len(kept) >= 2 else None


def photo_names(photos: Path, gt: Path | None) -> list[str]:
    if gt is not None:
        return [c["name"] for c in json.loads(gt.read_text())["cameras"]]
    return sorted(p.name for p in photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def spread(values: list[float], spec: str) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(format(v, spec) for v in (low, mid, high))


def summarise(
    runs: list[dict], label: str, photos: int, has_gt: bool = True
) -> tuple[list[str], dict]:
    """Markdown lines (a table of the runs, then the summary row) and the summary as a dict."""
    placed = [r["scores"]["registered"] for r in runs]
    auc = [float(r["scores"].get("auc_30", 0.0)) for r in runs]
    verdicts = Counter(r["verdict"] for r in runs)
    lines = [
        "| run | placed | AUC@30 | RRA@5 | RTA@5 | rot. err. median | AUC@30 of the placed "
        "| verdict | wall s | CPU s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, r in enumerate(runs, 1):
        s = r["scores"]
        rot = s.get("rotation_error_median_deg", float("inf"))
        scored = f"{s.get('auc_30', 0):.3f} | {s.get('rra_5', 0):.3f} | {s.get('rta_5', 0):.3f}"
        placed_auc = r.get("auc_30_placed")
        placed_auc = "-" if placed_auc is None else f"{placed_auc:.3f}"
        scored = f"{scored} | {rot:.2f}° | {placed_auc}" if has_gt else "- | - | - | - | -"
        lines.append(
            f"| {k} | {s['registered']} / {photos} | {scored} | {r['verdict']} "
            f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load_avg']:.1f} |"
        )
    reasons = Counter(reason for r in runs for reason in r["reasons"])
    lines += [
        "",
        "reasons given (runs): " + ("; ".join(f"{t} ({n})" for t, n in reasons.items()) or "none"),
    ]
    summary = {
        "set": label,
        "photos": photos,
        "runs": len(runs),
        "placed_min_median_max": [min(placed), statistics.median(placed), max(placed)],
        "auc_30_min_median_max": [min(auc), statistics.median(auc), max(auc)] if has_gt else None,
        "verdicts": dict(verdicts),
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
    }
    verdict_text = ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
    lines += [
        "",
        "| set | runs | placed (min / median / max) | AUC@30 (min / median / max) | verdicts "
        "| wall s (median) | CPU s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {label} | {len(runs)} | {spread(placed, 'g')} of {photos} "
        f"| {spread(auc, '.3f') if has_gt else '-'} "
        f"| {verdict_text} | {summary['wall_s_median']:.1f} | {summary['cpu_s_median']:.1f} |",
    ]
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("gt", type=Path, nargs="?", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-image-px", type=int, default=1024)
    parser.add_argument("--matching", choices=["auto", "exhaustive", "pruned"], default="auto")
    parser.add_argument("--densify", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--masks", type=Path, default=None)
    parser.add_argument("--label", default=None, help="the set's name in the summary row")
    parser.add_argument("--engine-path", type=Path, default=None, help="src folder of the engine")
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
    child_args += ["--matching", args.matching, "--densify" if args.densify else "--no-densify"]
    if args.masks:
        child_args += ["--masks", str(args.masks)]
    env = dict(os.environ)
    if args.engine_path:
        path = [str(args.engine_path.resolve()), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(args.runs):
            out = Path(scratch) / f"run{k}.json"
            command = [sys.executable, __file__, *child_args, "--one-run", str(out)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0 or not out.exists():
                tail = "\n".join(done.stderr.strip().splitlines()[-5:])
                raise SystemExit(f"run {k + 1} ended with status {done.returncode}:\n{tail}")
            run = json.loads(out.read_text())
            run["process_wall_s"] = round(time.perf_counter() - started, 2)
            runs.append(run)
            if k == 0:
                print(f"engine: {run['aetherscan_file']}", file=sys.stderr)
            s = run["scores"]
            print(
                f"run {k + 1}/{args.runs}: {s['registered']}/{photos} placed, "
                f"AUC@30 {s.get('auc_30', 0):.3f}, {run['verdict']}, {run['wall_s']:.1f} s",
                file=sys.stderr,
            )
    lines, summary = summarise(runs, label, photos, args.gt is not None)
    print("\n".join(lines))
    if args.json:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        text = json.dumps({"summary": summary, "runs": runs, "options": options}, indent=1)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
