"""Previews: something to look at while the sparse work runs (``aetherscan.engines.base.Preview``).

Two kinds, both sent to the parent as ``{"type": "preview", ...}`` lines:

- a **first look** right after the photos' first features: a quick map of at most
  ``FIRST_LOOK_PHOTOS`` photos (spread over the set, in input order) from their largest-scale
  features, each matched with its neighbours in input order and the photos most like it. It
  costs a few percent of the job (docs/benchmarks.md) and gives cameras and a few points well
  before the real matching ends. It is rough: it may place fewer photos than the result, its
  focal lengths are the priors (EXIF, or COLMAP's guess), and on a busy machine it may differ
  from run to run (its mapper stops after ``FIRST_LOOK_MAX_S``); its message says so;
- **live mapping**: the incremental mapper's model each time it places a photo (at most one
  preview every ``LIVE_INTERVAL_S``).

The result replaces them all (its cameras and its points); nothing of a preview is kept.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

import numpy as np

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo
from aetherscan.engines.sfm.matching import descriptor_votes

FIRST_LOOK_PHOTOS = 24
FIRST_LOOK_FEATURES = 1024  # per photo, the largest-scale ones (they match across views best)
FIRST_LOOK_NEIGHBOURS = 2  # each side, in input order; the ring is closed
FIRST_LOOK_SIMILAR = 3  # and the photos most like each one
FIRST_LOOK_INIT_INLIERS = 50
FIRST_LOOK_INIT_ANGLE_DEG = 8.0
FIRST_LOOK_MAX_S = 3  # whole seconds (a COLMAP setting): the mapper stops there with what it has
PREVIEW_POINTS = 4000  # a sample: enough to see the shape, small enough to send often
LIVE_INTERVAL_S = 1.0
SEED = 0


def preview_message(model, infos: dict[int, PhotoInfo], message: str) -> dict[str, Any]:
    """The preview line of ``model`` (a pycolmap.Reconstruction) whose image ids map to
    ``infos``: cameras in pixels of the original photos, and a sample of its points."""
    cameras = []
    for image_id in sorted(model.reg_image_ids()):
        info = infos.get(image_id)
        if info is None:
            continue
        image = model.image(image_id)
        K = np.asarray(model.camera(image.camera_id).calibration_matrix(), float)
        K = np.diag([info.scale, info.scale, 1.0]) @ K
        cam_from_world = np.eye(4)
        cam_from_world[:3] = image.cam_from_world().matrix()
        cameras.append(
            {
                "name": info.name,
                "width": info.width,
                "height": info.height,
                "K": K.tolist(),
                "cam_from_world": cam_from_world.tolist(),
            }
        )
    ids = sorted(model.point3D_ids())
    if len(ids) > PREVIEW_POINTS:  # sampled before any point is read: a big model costs little
        keep = np.random.default_rng(SEED).choice(len(ids), PREVIEW_POINTS, replace=False)
        ids = [ids[i] for i in np.sort(keep)]
    points = [model.point3D(i) for i in ids]
    xyz = np.array([p.xyz for p in points], np.float32).reshape(-1, 3)
    rgb = np.array([p.color for p in points], np.uint8).reshape(-1, 3)
    return {
        "type": "preview",
        "message": message,
        "cameras": cameras,
        "points": {"xyz": xyz.ravel().tolist(), "rgb": rgb.ravel().tolist()},
    }


class LivePreviews:
    """Sends the mapper's growing model, at most once every ``LIVE_INTERVAL_S``."""

    def __init__(self, job: SfmJob, infos: dict[int, PhotoInfo], total: int) -> None:
        self.job, self.infos, self.total = job, infos, total
        self.last_sent = -np.inf

    def maybe_send(self, model) -> None:
        now = time.monotonic()
        if now - self.last_sent < LIVE_INTERVAL_S or model.num_reg_images() < 2:
            return
        self.last_sent = now
        placed = model.num_reg_images()
        self.job.send(
            preview_message(model, self.infos, f"placing photos: {placed} of {self.total} so far")
        )


def first_look(job: SfmJob, infos: list[PhotoInfo], probe_path) -> None:
    """Map a few photos quickly from the features in ``probe_path`` (a database with every
    photo's first features) and send the preview; an error here only costs the preview."""
    try:
        _first_look(job, infos, probe_path)
    except Exception as exc:  # a preview is never worth a job
        print(f"the first look failed: {exc!r}", file=sys.stderr)
        job.stats["first_look_error"] = repr(exc)[:200]
    finally:
        (job.work / "first_look.db").unlink(missing_ok=True)


def _first_look(job: SfmJob, infos: list[PhotoInfo], probe_path) -> None:
    import pycolmap

    chosen = _spread(infos, FIRST_LOOK_PHOTOS)
    if len(chosen) < 3:
        return
    path = job.work / "first_look.db"
    shutil.copyfile(probe_path, path)  # its cameras, rigs, frames and images, as extracted
    db = pycolmap.Database.open(path)
    features = {}
    for info in chosen:
        image = db.read_image_with_name(info.file)
        if image is not None and db.num_keypoints_for_image(image.image_id) >= 30:
            features[image.image_id] = (
                db.read_keypoints(image.image_id),  # (M, 6): x, y, affine a11 a12 a21 a22
                db.read_descriptors(image.image_id),
            )
    db.clear_keypoints()  # only the chosen photos' largest-scale features stay
    db.clear_descriptors()
    ids: dict[int, PhotoInfo] = {}
    retrieval = []  # per photo, its largest-scale descriptors, unit length
    by_file = {info.file: info for info in chosen}
    for image_id, (keypoints, descriptors) in features.items():
        scale = np.abs(keypoints[:, 2] * keypoints[:, 5] - keypoints[:, 3] * keypoints[:, 4])
        keep = np.sort(np.argsort(-scale)[:FIRST_LOOK_FEATURES])
        db.write_keypoints(image_id, keypoints[keep])
        db.write_descriptors(image_id, _rows(descriptors, keep))
        votes = np.asarray(descriptors.data, np.float32)[keep[np.argsort(-scale[keep])][:256]]
        retrieval.append(votes / np.maximum(np.linalg.norm(votes, axis=1, keepdims=True), 1e-6))
        ids[image_id] = by_file[db.read_image(image_id).name]
    db.close()
    if len(ids) < 3:
        return
    pairs = _pairs(retrieval)
    model = _map(job, path, [info.file for info in ids.values()], pairs)
    if model is None:
        job.stats["first_look_placed"] = 0
        return
    placed = model.num_reg_images()
    job.stats["first_look_placed"] = placed
    job.send(
        preview_message(
            model,
            ids,
            f"a first look: {placed} of {len(infos)} photos placed roughly from their first "
            "features (the result replaces it)",
        )
    )


def _spread(infos: list[PhotoInfo], most: int) -> list[PhotoInfo]:
    """At most ``most`` photos spread evenly over the set, in input order."""
    if len(infos) <= most:
        return list(infos)
    picks = np.linspace(0, len(infos) - 1, most).round().astype(int)
    return [infos[i] for i in sorted(set(picks.tolist()))]


def _rows(descriptors, keep: np.ndarray):
    """The rows ``keep`` of a database's descriptors, in the form the database writes."""
    import pycolmap

    return pycolmap.FeatureDescriptors(
        type=descriptors.type, data=np.ascontiguousarray(np.asarray(descriptors.data)[keep])
    )


def _pairs(descriptors: list[np.ndarray]) -> list[tuple[int, int]]:
    """Each photo with its neighbours in input order (the ring closed) and the photos most like
    it by descriptor votes (input order is not always the order around the subject)."""
    n = len(descriptors)
    pairs = {
        (min(a, (a + d) % n), max(a, (a + d) % n))
        for a in range(n)
        for d in range(1, FIRST_LOOK_NEIGHBOURS + 1)
    }
    votes = descriptor_votes(descriptors)
    for a in range(n):
        for b in np.argsort(-votes[a])[:FIRST_LOOK_SIMILAR]:
            if b != a and votes[a, b] > 0:
                pairs.add((min(a, int(b)), max(a, int(b))))
    return sorted(p for p in pairs if p[0] != p[1])


def _map(job: SfmJob, path, names: list[str], pairs: list[tuple[int, int]]):
    """Match the pairs and map once."""
    import pycolmap

    pairs_file = job.work / "first_look_pairs.txt"
    pairs_file.write_text("".join(f"{names[a]} {names[b]}\n" for a, b in pairs))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = job.threads
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = pairs_file
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = SEED
    pycolmap.match_image_pairs(
        path,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=pycolmap.Device.cpu,
    )
    pairs_file.unlink()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = job.threads
    options.random_seed = SEED
    options.mapper.random_seed = SEED
    options.triangulation.random_seed = SEED
    options.multiple_models = False
    # A few photos with few features do not pin down the lens: keep the prior (the EXIF focal
    # length, or COLMAP's guess) rather than fit a wild one.
    options.ba_refine_focal_length = False
    options.ba_refine_extra_params = False
    options.min_model_size = 3
    # A look, not the result: start from a weaker pair than COLMAP's default would.
    options.mapper.init_min_num_inliers = FIRST_LOOK_INIT_INLIERS
    options.mapper.init_min_tri_angle = FIRST_LOOK_INIT_ANGLE_DEG
    options.max_runtime_seconds = FIRST_LOOK_MAX_S
    options.image_path = str(job.images_dir)
    options.extract_colors = True
    manager = pycolmap.ReconstructionManager()
    database = pycolmap.Database.open(path)
    try:
        pycolmap.IncrementalPipeline(options, database, manager).run()
    finally:
        database.close()
    models = [manager.get(i) for i in range(manager.size())]
    models = [m for m in models if m.num_reg_images() >= 2]
    return max(models, key=lambda m: m.num_reg_images(), default=None)
