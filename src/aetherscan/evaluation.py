"""``aetherscan evaluate PHOTOS GT.json``: run an engine on photos with known cameras and score it.

The ground-truth format is in docs/evaluation.md; the scores in ``aetherscan.geometry.metrics``.
Every score counts a photo that the engine did not register as a failure, and an engine that
fails outright scores zero everywhere.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aetherscan.engines.base import EngineError, Observer, Photo
from aetherscan.engines.factory import create_engine
from aetherscan.geometry.metrics import focal_errors_rel, score_poses
from aetherscan.reconstruction import Reconstruction
from aetherscan.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TrueCamera:
    name: str
    K: np.ndarray  # (3, 3)
    cam_from_world: np.ndarray | None  # (4, 4); None where only intrinsics are known
    width: int | None = None
    height: int | None = None


def load_ground_truth(path: Path) -> list[TrueCamera]:
    """Read a ground-truth JSON file; raises ValueError naming the first thing that is wrong."""
    data = json.loads(Path(path).read_text())
    entries = data.get("cameras") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected an object with a non-empty list 'cameras'")
    cameras = []
    for k, entry in enumerate(entries):
        where = f"{path}: cameras[{k}]"
        try:
            K = np.asarray(entry["K"], np.float64)
            name = str(entry["name"])
        except KeyError as exc:
            raise ValueError(f"{where} has no {exc.args[0]!r}") from exc
        if K.shape != (3, 3):
            raise ValueError(f"{where}: K must be 3x3, got shape {K.shape}")
        pose = None
        if "R" in entry or "t" in entry:
            R, t = np.asarray(entry["R"], np.float64), np.asarray(entry["t"], np.float64)
            if R.shape != (3, 3) or t.shape != (3,):
                raise ValueError(f"{where}: R must be 3x3 and t of length 3")
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
                raise ValueError(f"{where}: R is not a rotation matrix")
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = R, t
        cameras.append(TrueCamera(name, K, pose, entry.get("width"), entry.get("height")))
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: photo names repeat")
    return cameras


def _key(name: str) -> str:
    return Path(name).stem.lower()


def evaluate_reconstruction(
    reconstruction: Reconstruction | None, truth: list[TrueCamera]
) -> dict[str, object]:
    """Scores of a reconstruction (None: the engine failed) against the true cameras."""
    views = {_key(v.name): v for v in reconstruction.views} if reconstruction else {}
    matched = [views.get(_key(cam.name)) for cam in truth]
    result: dict[str, object] = {
        "photos": len(truth),
        "registered": sum(v is not None for v in matched),
    }
    posed = [
        (cam, view)
        for cam, view in zip(truth, matched, strict=True)
        if cam.cam_from_world is not None
    ]
    if len(posed) >= 2:
        scores = score_poses(
            [None if view is None else view.cam_from_world for _, view in posed],
            [cam.cam_from_world for cam, _ in posed],
        )
        result.update(scores.as_dict())
    predicted_focal = []
    for cam, view in zip(truth, matched, strict=True):
        if view is None:
            predicted_focal.append(None)
            continue
        # The truth may describe another resolution of the same photo.
        scale = cam.width / view.width if cam.width else 1.0
        predicted_focal.append(scale * float(np.mean(view.focal_px)))
    true_focal = [float((cam.K[0, 0] + cam.K[1, 1]) / 2) for cam in truth]
    focal_err = focal_errors_rel(predicted_focal, true_focal)
    result["focal_error_median_pct"] = float(np.median(focal_err) * 100)
    result["focal_acc_5pct"] = float(np.mean(focal_err < 0.05))
    return result


class _PrintProgress(Observer):
    def __init__(self) -> None:
        self.stage = ""
        self.start = time.perf_counter()

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if stage != self.stage:
            self.stage = stage
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:6.1f} s] {stage}: {message}", file=sys.stderr, flush=True)


def evaluate_command(
    settings: Settings, photos_dir: Path, gt_json: Path, out_json: Path | None
) -> int:
    """Run the configured engine on the photos of gt_json found in photos_dir; print the scores."""
    try:
        truth = load_ground_truth(gt_json)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = {_key(p.name): p for p in Path(photos_dir).iterdir() if p.is_file()}
    missing = [cam.name for cam in truth if _key(cam.name) not in files]
    if missing:
        print(f"error: not in {photos_dir}: {', '.join(missing)}", file=sys.stderr)
        return 2
    photos = [Photo(files[_key(cam.name)].name, files[_key(cam.name)]) for cam in truth]
    engine = create_engine(settings.engine, **settings.engine_options())
    start, cpu_start = time.perf_counter(), _cpu_s()
    reconstruction, error = None, None
    try:
        reconstruction = engine.reconstruct(photos, _PrintProgress())
    except EngineError as exc:
        error = str(exc)
        print(f"the engine failed: {error}", file=sys.stderr)
    elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu_start
    result = {
        "engine": engine.name,
        "photos_dir": str(photos_dir),
        "ground_truth": str(gt_json),
        "time_s": round(elapsed, 2),
        # CPU seconds of this process and its workers: on a busy machine, the honest measure.
        "cpu_s": round(cpu, 2),
        **evaluate_reconstruction(reconstruction, truth),
        "points": reconstruction.num_points if reconstruction else 0,
        "timings_s": reconstruction.timings_s if reconstruction else {},
        "dropped": [
            {"name": d.name, "reason": d.reason}
            for d in (reconstruction.dropped if reconstruction else [])
        ],
        "error": error,
    }
    _print_table(result)
    if out_json is not None:
        Path(out_json).write_text(json.dumps(result, indent=2, default=_json_number))
    return 0 if error is None else 1


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _json_number(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _print_table(result: dict) -> None:
    def show(value: object) -> str:
        if isinstance(value, float):
            if math.isinf(value) or math.isnan(value):
                return str(value)
            return f"{value:.4g}"
        return str(value)

    rows = [
        ("engine", result["engine"]),
        ("registered", f"{result['registered']} / {result['photos']}"),
        ("time_s", result["time_s"]),
        ("cpu_s", result["cpu_s"]),
    ]
    for key in (
        "rra_5",
        "rra_15",
        "rta_5",
        "rta_15",
        "auc_30",
        "rotation_error_median_deg",
        "translation_error_median_deg",
        "centre_error_median",
        "centre_error_median_rel",
        "centre_acc_5pct",
        "focal_error_median_pct",
        "points",
    ):
        if key in result:
            rows.append((key, result[key]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {show(value)}")
    for dropped in result["dropped"]:
        print(f"dropped {dropped['name']}: {dropped['reason']}")
