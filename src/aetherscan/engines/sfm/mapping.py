"""Step 4: structure from motion. Two mappers see the same verified matches:

- incremental (COLMAP's own): grows a model from the best pair, photo by photo;
- global (GLOMAP in COLMAP 4): averages the pairs' rotations, then places all cameras at once.

They fail differently on objects (incremental drifts around a ring or locks onto a wrong start,
global needs the pairs' rotations to agree), so the engine may run both and keep the one that
agrees best with the verified pairs (``aetherscan.engines.sfm.quality``). Two photos never seed
COLMAP's incremental pipeline (it wants points seen three times): ``map_from_pair`` does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherscan.engines.sfm.job import SfmFailure, SfmJob
from aetherscan.engines.sfm.joining import join_models
from aetherscan.engines.sfm.loading import PhotoInfo
from aetherscan.engines.sfm.preview import LivePreviews

MIN_PAIR_INLIERS = 15  # a pair with fewer verified matches connects nothing
MIN_PAIR_POINTS = 30  # a two-photo model with fewer points is not trusted
SEED = 0
MAPPERS = ("incremental", "global")


@dataclass
class Candidate:
    """One mapper's result: [(model, image ids it places)], and why the rest is left out."""

    mapper: str
    parts: list[tuple[Any, list[int]]]  # (pycolmap.Reconstruction, image ids)
    database: Path  # the matches it was made from (image ids are that database's)
    dropped: dict[int, str] = field(default_factory=dict)  # photo index -> reason
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def placed(self) -> set[int]:
        return {i for _, ids in self.parts for i in ids}


def connected_photos(job: SfmJob, id_to_index: dict[int, int]) -> set[int]:
    """The image ids with at least one reliably verified pair; the others are dropped here."""
    import pycolmap

    db = pycolmap.Database.open(job.database_path)
    pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    db.close()
    connected: set[int] = set()
    for pair_id, count in zip(pair_ids, inliers, strict=True):
        if count >= MIN_PAIR_INLIERS:
            connected.update(pycolmap.pair_id_to_image_pair(pair_id))
    for image_id, index in id_to_index.items():
        if image_id not in connected:
            job.dropped[index] = "shares no reliably matched features with any other photo"
    if len(connected) < 2:
        raise SfmFailure(
            "no two photos share enough matched features: take photos that overlap by at "
            "least half, with some texture in view"
        )
    return connected & id_to_index.keys()


def run_mapper(
    job: SfmJob,
    mapper: str,
    id_to_index: dict[int, int],
    connected: set[int],
    by_id: dict[int, PhotoInfo] | None = None,
):
    """One mapper on the database: a Candidate, or None when it placed nothing. With ``by_id``
    (image id -> photo) the incremental mapper's growing model is sent as previews."""
    job.stage("mapping", f"placing the photos ({mapper} structure from motion)")
    if mapper == "incremental":
        models = _incremental(job, len(connected), by_id)
    elif mapper == "global":
        models = _global(job)
    else:
        raise ValueError(f"unknown mapper {mapper!r}: expected one of {MAPPERS}")
    stats: dict[str, Any] = {}
    if not models and mapper == "incremental":
        job.progress("mapping", 0.5, "placing the best pair of photos")
        model = map_from_pair(job)
        models = [model] if model is not None else []
        stats["seeded_from_pair"] = model is not None
    models = [m for m in models if m.num_reg_images() >= 2]
    if not models:
        return None
    stats["models"] = len(models)
    dropped: dict[int, str] = {}
    parts = join_models(
        sorted(models, key=lambda m: m.num_reg_images(), reverse=True), id_to_index, dropped, stats
    )
    candidate = Candidate(mapper, parts, job.database_path, dropped, stats)
    for image_id in connected - candidate.placed:
        candidate.dropped.setdefault(
            id_to_index[image_id],
            "matched other photos but could not be placed consistently with them",
        )
    return candidate


def _incremental(job: SfmJob, total: int, by_id: dict[int, PhotoInfo] | None) -> list:
    """COLMAP's incremental pipeline (what ``pycolmap.incremental_mapping`` runs), with the
    growing model sent as a preview while it places photos."""
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = job.threads
    options.min_model_size = 2  # two overlapping photos are a result; splits get reported
    options.max_num_models = 10
    options.random_seed = SEED
    options.extract_colors = True
    options.image_path = str(job.images_dir)
    manager = pycolmap.ReconstructionManager()
    previews = LivePreviews(job, by_id, total) if job.previews and by_id else None
    registered = [0]

    def next_image() -> None:
        # Counts every registration, in all models and retries: capped at the total.
        registered[0] = min(registered[0] + 1, total)
        job.progress("mapping", registered[0] / total, f"placed {registered[0]} of {total} photos")
        if previews is not None and manager.size():
            previews.maybe_send(manager.get(manager.size() - 1))  # the model growing now

    database = pycolmap.Database.open(job.database_path)
    try:
        pipeline = pycolmap.IncrementalPipeline(options, database, manager)
        pipeline.add_callback(
            pycolmap.IncrementalPipelineCallback.NEXT_IMAGE_REG_CALLBACK, next_image
        )
        pipeline.run()
    finally:
        database.close()
    return [manager.get(i) for i in range(manager.size())]


def _global(job: SfmJob) -> list:
    import pycolmap

    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = job.threads
    options.random_seed = SEED
    options.min_model_size = 2
    options.mapper.random_seed = SEED
    options.mapper.rotation_averaging.random_seed = SEED
    options.mapper.global_positioning.random_seed = SEED
    options.mapper.retriangulation.random_seed = SEED
    options.mapper.global_positioning.use_gpu = False
    options.mapper.bundle_adjustment.ceres.use_gpu = False
    out = job.work / "sparse_global"
    out.mkdir(exist_ok=True)
    found = pycolmap.global_mapping(job.database_path, job.images_dir, out, options)
    models = list(found.values())
    for model in models:
        model.extract_colors_for_all_images(job.images_dir)
    return models


def map_from_pair(job: SfmJob):
    """A model from the best pair of photos, then every photo that joins it, or None."""
    import pycolmap

    db = pycolmap.Database.open(job.database_path)
    cache_options = pycolmap.DatabaseCacheOptions()
    cache_options.min_num_matches = 15
    cache = pycolmap.DatabaseCache.create(db, cache_options)
    db.close()
    # COLMAP's own relaxation schedule for the first pair: (inliers, triangulation angle).
    for min_inliers, min_angle_deg in ((100, 16), (50, 16), (50, 8), (25, 8), (25, 4)):
        model = pycolmap.Reconstruction()
        mapper = pycolmap.IncrementalMapper(cache)
        mapper.begin_reconstruction(model)
        options = pycolmap.IncrementalMapperOptions()
        options.init_min_num_inliers = min_inliers
        options.init_min_tri_angle = min_angle_deg
        options.num_threads = job.threads
        found = mapper.find_initial_image_pair(options, -1, -1)
        if found is None:
            mapper.end_reconstruction(True)
            continue
        (first, second), second_from_first = found
        mapper.register_initial_image_pair(options, first, second, second_from_first)
        triangulation = pycolmap.IncrementalTriangulatorOptions()
        triangulation.ignore_two_view_tracks = False
        # Two photos do not pin down focal length and distortion: keep the prior (EXIF, or
        # a guess that makes the poses approximate; fitting a focal to the fundamental
        # matrix was tried and is unstable for photos around an object).
        bundle = pycolmap.BundleAdjustmentOptions()
        bundle.refine_focal_length = False
        bundle.refine_extra_params = False
        for angle in (min_angle_deg, triangulation.min_angle):  # strict first, then all
            triangulation.min_angle = angle
            for image_id in (first, second):
                mapper.triangulate_image(triangulation, image_id)
            mapper.adjust_global_bundle(options, bundle)
        model.normalize()
        mapper.filter_points(options)
        mapper.filter_frames(options)
        if model.num_reg_images() < 2 or model.num_points3D() < MIN_PAIR_POINTS:
            mapper.end_reconstruction(True)
            continue
        while True:  # more photos, when the pipeline failed on a larger set
            placed = False
            for image_id in mapper.find_next_images(options, False):
                if mapper.register_next_image(options, image_id):
                    mapper.triangulate_image(triangulation, image_id)
                    mapper.adjust_global_bundle(options, bundle)
                    placed = True
                    break
            if not placed:
                break
        if model.num_reg_images() > 2:
            mapper.adjust_global_bundle(options, pycolmap.BundleAdjustmentOptions())
        mapper.filter_points(options)
        mapper.end_reconstruction(False)
        model.extract_colors_for_all_images(job.images_dir)
        return model
    return None


# -- result ----------------------------------------------------------------------------
