"""The sparse half of the COLMAP engine, run in a child process: photos in, cameras and a sparse
cloud out (``python -m aetherscan.engines.colmap_sfm SPEC.json``).

Some pycolmap calls abort the whole process instead of raising (a failed CHECK in C++), so this
module never runs inside the server: ``aetherscan.engines.colmap`` starts it as a child and turns
a crash into an ``EngineError``. It talks to its parent with one JSON object per line on the
original stdout (``progress``, ``result``, ``error``); everything the C++ side prints goes to
stderr, which the parent keeps in a log file.

Steps, each measured on 2 CPU cores (see docs/benchmarks.md):

1. load: decode with ``open_photo`` (EXIF orientation applied), downscale to ``max_image_px``,
   write JPEGs; one COLMAP camera per (EXIF camera, focal, image size) with the EXIF focal as prior.
2. features: SIFT at the image's own resolution; photos with too few features (small or soft
   images) are extracted again from a 2x upsampled octave, which costs 4x and finds up to 10x
   the features, when a trial on one of them shows that it does.
3. matching: all pairs up to ``EXHAUSTIVE_MAX_PHOTOS``; beyond that each photo is matched to its
   neighbours in input order plus the photos that share the most quick descriptor votes with it
   (no vocabulary tree: that needs a download, which this wheel aborts on).
4. mapping: incremental SfM; the largest model is the result, every other photo is reported.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from aetherscan.engines.colmap import PARENT_PID_VARIABLE
from aetherscan.photos import PhotoError, open_photo

# Below this many photos every pair is matched: the pruned plan would not save pairs.
EXHAUSTIVE_MAX_PHOTOS = 30
SEQUENTIAL_NEIGHBOURS = 3  # each side, in input order
RETRIEVAL_NEIGHBOURS = 10
RETRIEVAL_DESCRIPTORS = 256  # per photo, the largest-scale ones
# Photos with fewer features than this at their own resolution get the upsampled octave too.
MIN_FEATURES_FAST = 1500
MIN_UPSAMPLING_GAIN = 1.5  # features at 2x over features at 1x, measured on one photo
MIN_FEATURES_USABLE = 30
MIN_PAIR_POINTS = 30
RETRY_BELOW_PLACED = 0.8  # fewer photos placed than this share: match again, guided  # a two-photo model with fewer points is not trusted
JPEG_QUALITY = 95
# Share of the whole job at the end of each stage (the parent adds densify on top).
STAGE_END = {"load": 0.06, "features": 0.25, "matching": 0.45, "mapping": 0.65}
STAGE_START = {"load": 0.0, "features": 0.06, "matching": 0.25, "mapping": 0.45}

EXIF_IFD = 0x8769
EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110
EXIF_FOCAL_MM, EXIF_FOCAL_35MM = 0x920A, 0xA405
DIAGONAL_35MM = math.hypot(36.0, 24.0)
DEFAULT_FOCAL_FACTOR = 1.2  # focal / long side when EXIF says nothing (COLMAP's default)


@dataclass
class PhotoInfo:
    index: int
    name: str
    file: str  # the downscaled JPEG, relative to the image folder
    width: int  # original, upright
    height: int
    scaled_width: int
    scaled_height: int
    scale: float  # original pixels per scaled pixel
    camera_key: tuple
    focal_px: float | None  # EXIF prior at the scaled size


def focal_prior_px(exif: Image.Exif, width: int, height: int) -> float | None:
    """Focal length in pixels of an upright width x height photo from its EXIF, or None.

    Uses the 35 mm equivalent focal length, which is defined through the diagonal: it needs no
    sensor size. A bare FocalLength in mm without a sensor width says nothing about pixels.
    """
    try:
        focal_35 = float(exif.get_ifd(EXIF_IFD).get(EXIF_FOCAL_35MM) or 0)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if focal_35 <= 0:
        return None
    return focal_35 / DIAGONAL_35MM * math.hypot(width, height)


def _camera_key(exif: Image.Exif, width: int, height: int) -> tuple:
    try:
        sub = exif.get_ifd(EXIF_IFD)
        focal = (str(sub.get(EXIF_FOCAL_MM, "")), str(sub.get(EXIF_FOCAL_35MM, "")))
        make, model = str(exif.get(EXIF_MAKE, "")).strip("\x00 "), str(exif.get(EXIF_MODEL, ""))
    except Exception:  # a broken EXIF block only loses the grouping
        focal, make, model = ("", ""), "", ""
    return (make, model.strip("\x00 "), *focal, width, height)


class Child:
    """One job in the child process: the steps above plus reporting to the parent."""

    def __init__(self, spec: dict, channel) -> None:
        self.spec = spec
        self.channel = channel
        self.work = Path(spec["work_dir"])
        self.images_dir = self.work / "images"
        self.database_path = self.work / "database.db"
        self.threads = int(spec.get("num_threads", -1))
        self.timings: dict[str, float] = {}
        self.dropped: dict[int, str] = {}
        self.stats: dict[str, object] = {}
        self.last_fraction = 0.0

    # -- reporting -------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()

    def progress(self, stage: str, within: float, message: str) -> None:
        start, end = STAGE_START[stage], STAGE_END[stage]
        fraction = start + (end - start) * min(max(within, 0.0), 1.0)
        # Never backwards: a second mapping pass restarts its own count.
        fraction = self.last_fraction = max(fraction, self.last_fraction)
        self.send({"type": "progress", "stage": stage, "fraction": fraction, "message": message})

    def stage(self, name: str, message: str) -> None:
        self.progress(name, 0.0, message)
        if self.spec.get("abort_at") == name:  # test hook: a crash like a failed C++ CHECK
            os.abort()

    # -- 1. load ---------------------------------------------------------------------------
    def load(self) -> list[PhotoInfo]:
        self.stage("load", f"decoding {len(self.spec['photos'])} photos")
        self.images_dir.mkdir(parents=True, exist_ok=True)
        photos = self.spec["photos"]
        max_px = int(self.spec["max_image_px"])

        def prepare(item: tuple[int, dict]) -> PhotoInfo | str:
            index, photo = item
            try:
                image = open_photo(Path(photo["path"]), max_megapixels=self.spec["max_megapixels"])
            except PhotoError as exc:
                return f"could not be decoded: {exc}"
            exif = image.getexif()  # decoded with the pixels, orientation already applied
            width, height = image.size
            # One scale for both axes (original = scale * scaled), so fx = fy survives the way
            # back; the last fraction of a pixel row or column is cropped for that.
            scale = max(1.0, max(width, height) / max_px)
            size = (max(1, math.floor(width / scale)), max(1, math.floor(height / scale)))
            if size != image.size:
                box = (0.0, 0.0, size[0] * scale, size[1] * scale)
                image = image.resize(size, Image.Resampling.LANCZOS, box=box)
            file = f"{index:05d}.jpg"
            image.save(self.images_dir / file, quality=JPEG_QUALITY)
            focal = focal_prior_px(exif, width, height)
            return PhotoInfo(
                index=index,
                name=photo["name"],
                file=file,
                width=width,
                height=height,
                scaled_width=size[0],
                scaled_height=size[1],
                camera_key=_camera_key(exif, *size),
                scale=scale,
                focal_px=None if focal is None else focal / scale,
            )

        infos = []
        # Pillow decodes and resizes without the GIL: threads use every core.
        with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            for k, result in enumerate(pool.map(prepare, enumerate(photos))):
                if isinstance(result, str):
                    self.dropped[k] = result
                else:
                    infos.append(result)
                self.progress("load", (k + 1) / len(photos), f"decoded {k + 1} of {len(photos)}")
        return infos

    # -- database --------------------------------------------------------------------------
    def create_database(self, infos: list[PhotoInfo]) -> dict[int, int]:
        """Cameras (one per camera key), rigs, frames and images; returns photo index -> image id."""
        import pycolmap

        db = pycolmap.Database.open(self.database_path)
        cameras: dict[tuple, tuple[int, int]] = {}
        image_ids = {}
        for info in infos:
            if info.camera_key not in cameras:
                w, h = info.scaled_width, info.scaled_height
                focal = info.focal_px or DEFAULT_FOCAL_FACTOR * max(w, h)
                camera = pycolmap.Camera.create_from_model_name(0, "SIMPLE_RADIAL", focal, w, h)
                camera.has_prior_focal_length = info.focal_px is not None
                camera_id = db.write_camera(camera)
                rig = pycolmap.Rig()
                rig.add_ref_sensor(db.read_camera(camera_id).sensor_id)
                cameras[info.camera_key] = (camera_id, db.write_rig(rig))
            camera_id, rig_id = cameras[info.camera_key]
            image_id = db.write_image(pycolmap.Image(name=info.file, camera_id=camera_id))
            frame = pycolmap.Frame()
            frame.rig_id = rig_id
            frame.add_data_id(db.read_image(image_id).data_id)
            db.write_frame(frame)
            image_ids[info.index] = image_id
        db.close()
        self.stats["cameras"] = len(cameras)
        return image_ids

    # -- 2. features ------------------------------------------------------------------------
    def extract(self, infos: list[PhotoInfo], image_ids: dict[int, int]) -> None:
        import pycolmap

        names = [info.file for info in infos]
        self.stage("features", f"finding features in {len(names)} photos")
        fast = self._extraction_options(first_octave=0)
        probe_path = self.work / "probe.db"
        self._extract_to(probe_path, names, fast)
        probe = pycolmap.Database.open(probe_path)
        counts = {
            n: probe.num_keypoints_for_image(probe.read_image_with_name(n).image_id) for n in names
        }
        sparse = [n for n in names if counts[n] < MIN_FEATURES_FAST]
        upsampled = self._extraction_options(first_octave=-1)
        if sparse:
            # Upsampling pays off for photos whose detail lies below the pixel scale (downscaled
            # phone photos: 10x the features) and is wasted on smooth ones (renders: 1.2x for 4x
            # the time). One photo tells which.
            sample = min(sparse, key=counts.get)
            trial_path = self.work / "trial.db"
            self._extract_to(trial_path, [sample], upsampled)
            trial = pycolmap.Database.open(trial_path)
            gain = trial.num_keypoints_for_image(trial.read_image_with_name(sample).image_id) / max(
                counts[sample], 1
            )
            trial.close()
            trial_path.unlink()
            self.stats["upsampling_gain"] = round(gain, 2)
            if gain < MIN_UPSAMPLING_GAIN:
                sparse = []
        db = pycolmap.Database.open(self.database_path)
        for info in infos:
            if info.file not in sparse:
                probe_id = probe.read_image_with_name(info.file).image_id
                image_id = image_ids[info.index]
                db.write_keypoints(image_id, probe.read_keypoints(probe_id))
                db.write_descriptors(image_id, probe.read_descriptors(probe_id))
        probe.close()
        db.close()
        probe_path.unlink()
        self.stats["upsampled_photos"] = len(sparse)
        if sparse:
            self.progress(
                "features",
                0.25,
                f"{len(sparse)} photos have little detail: looking again at twice the resolution",
            )
            pycolmap.extract_features(
                self.database_path,
                self.images_dir,
                image_names=sparse,
                extraction_options=upsampled,
                device=pycolmap.Device.cpu,
            )
        db = pycolmap.Database.open(self.database_path)
        counts = {info.index: db.num_keypoints_for_image(image_ids[info.index]) for info in infos}
        db.close()
        self.stats["features_per_photo_median"] = float(np.median(list(counts.values())))
        for info in infos:
            if counts[info.index] < MIN_FEATURES_USABLE:
                self.dropped[info.index] = (
                    f"only {counts[info.index]} features found: the photo is blank, blurred or "
                    "too dark to match"
                )

    def _extract_to(self, database_path: Path, names: list[str], options) -> None:
        import pycolmap

        pycolmap.extract_features(
            database_path,
            self.images_dir,
            image_names=names,
            camera_mode=pycolmap.CameraMode.PER_IMAGE,
            extraction_options=options,
            device=pycolmap.Device.cpu,
        )

    def _extraction_options(self, first_octave: int):
        import pycolmap

        options = pycolmap.FeatureExtractionOptions()
        options.num_threads = self.threads
        options.sift.first_octave = first_octave
        options.sift.max_num_features = 8192
        return options

    # -- 3. matching ------------------------------------------------------------------------
    def match(self, infos: list[PhotoInfo], image_ids: dict[int, int]) -> None:

        self.stage("matching", "choosing which photos to match")
        usable = [info for info in infos if info.index not in self.dropped]
        ids = [image_ids[info.index] for info in usable]
        strategy = self.spec.get("matching", "auto")
        if strategy == "exhaustive" or (strategy == "auto" and len(ids) <= EXHAUSTIVE_MAX_PHOTOS):
            pairs = [(ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids))]
            self.stats["matching"] = "exhaustive"
        else:
            pairs = self._pruned_pairs(ids)
            self.stats["matching"] = (
                f"{SEQUENTIAL_NEIGHBOURS} neighbours each side + {RETRIEVAL_NEIGHBOURS} most similar"
            )
        self.stats["pairs"] = len(pairs)
        self.pairs = pairs
        self.names = {image_ids[info.index]: info.file for info in usable}
        self._match_pairs(pairs, guided=False, stage="matching", what="pairs")

    def _match_pairs(self, pairs: list[tuple[int, int]], *, guided: bool, stage: str, what: str):
        import pycolmap

        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = self.threads
        # Guided: match again under the verified two-view geometry. Many more inliers across wide
        # baselines (the flowerpot fixtures go from 0 to 5 of 8 photos placed), 5x the CPU.
        matching.guided_matching = guided
        # Each call costs a set-up (about 25 % more CPU at 16 pairs a call): keep calls large,
        # in blocks of pairs sorted by first image, so the parent still sees progress.
        block = max(100, math.ceil(len(pairs) / 10))
        for start in range(0, len(pairs), block):
            chunk = pairs[start : start + block]
            pairs_file = self.work / "pairs.txt"
            pairs_file.write_text("".join(f"{self.names[a]} {self.names[b]}\n" for a, b in chunk))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = pairs_file
            pycolmap.match_image_pairs(
                self.database_path,
                matching_options=matching,
                pairing_options=pairing,
                device=pycolmap.Device.cpu,
            )
            done = min(start + block, len(pairs))
            self.progress(stage, done / len(pairs), f"matched {done} of {len(pairs)} {what}")

    def rematch_guided(self, unplaced: set[int]) -> None:
        """Match the pairs of photos not placed yet again, guided by their two-view geometry."""
        import pycolmap

        pairs = [(a, b) for a, b in self.pairs if a in unplaced or b in unplaced]
        db = pycolmap.Database.open(self.database_path)
        for a, b in pairs:
            db.delete_matches(a, b)
            db.delete_two_view_geometry(a, b)
        db.close()
        self.stats["guided_pairs"] = len(pairs)
        self._match_pairs(pairs, guided=True, stage="mapping", what="pairs again, guided")

    def _pruned_pairs(self, ids: list[int]) -> list[tuple[int, int]]:
        """Neighbours in input order plus the most similar photos by descriptor votes."""
        import pycolmap

        db = pycolmap.Database.open(self.database_path)
        descriptors = []
        for image_id in ids:
            keypoints = db.read_keypoints(image_id)  # (M, 6): x, y, affine a11 a12 a21 a22
            desc = np.asarray(db.read_descriptors(image_id).data, np.float32)  # (M, 128)
            scale = np.sqrt(
                np.abs(keypoints[:, 2] * keypoints[:, 5] - keypoints[:, 3] * keypoints[:, 4])
            )
            keep = np.argsort(-scale)[:RETRIEVAL_DESCRIPTORS]
            d = desc[keep]
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
            descriptors.append(d)
        db.close()
        votes = descriptor_votes(descriptors)
        n = len(ids)
        chosen = set()
        for a in range(n):
            for b in range(
                max(0, a - SEQUENTIAL_NEIGHBOURS), min(n, a + SEQUENTIAL_NEIGHBOURS + 1)
            ):
                if a != b:
                    chosen.add((min(a, b), max(a, b)))
            for b in np.argsort(-votes[a])[:RETRIEVAL_NEIGHBOURS]:
                if b != a and votes[a, b] > 0:
                    chosen.add((min(a, int(b)), max(a, int(b))))
        return [(ids[a], ids[b]) for a, b in sorted(chosen)]

    # -- 4. mapping -------------------------------------------------------------------------
    def map(self, infos: list[PhotoInfo], image_ids: dict[int, int]):
        import pycolmap

        self.stage("mapping", "finding the first pair of photos")
        usable = [info for info in infos if info.index not in self.dropped]
        db = pycolmap.Database.open(self.database_path)
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
        db.close()
        connected: set[int] = set()
        for pair_id, count in zip(pair_ids, inliers, strict=True):
            if count >= 15:
                connected.update(pycolmap.pair_id_to_image_pair(pair_id))
        id_to_index = {image_ids[info.index]: info.index for info in usable}
        self.id_to_index = id_to_index
        for image_id, index in id_to_index.items():
            if image_id not in connected:
                self.dropped[index] = "shares no reliably matched features with any other photo"
        if len(connected) < 2:
            raise SfmFailure(
                "no two photos share enough matched features: take photos that overlap by at "
                "least half, with some texture in view"
            )
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = self.threads
        options.min_model_size = 2  # two overlapping photos are a result; splits get reported
        options.max_num_models = 10
        options.random_seed = 0
        options.extract_colors = True
        registered = [0]
        total = len(connected)

        def next_image() -> None:
            # Counts every registration, in all models and retries: capped at the total.
            registered[0] = min(registered[0] + 1, total)
            self.progress(
                "mapping", registered[0] / total, f"placed {registered[0]} of {total} photos"
            )

        models = pycolmap.incremental_mapping(
            self.database_path,
            self.images_dir,
            self.work / "sparse",
            options,
            next_image_callback=next_image,
        )
        if not models:
            # COLMAP's pipeline seeds a model with points seen in three photos or more, so it
            # never succeeds with two photos; seed one here with two-view points allowed.
            self.progress("mapping", 0.5, "placing the best pair of photos")
            model = self.map_from_pair()
            if model is None:
                raise SfmFailure(
                    "COLMAP found matches but could not place any pair of photos in 3D: the "
                    "photos may be taken from one spot or overlap too little (walk around the "
                    "subject, with each photo overlapping the previous one by half)"
                )
            models = {0: model}
            self.stats["seeded_from_pair"] = True
        self.stats["models"] = len(models)
        parts = self.join_models(
            sorted(models.values(), key=lambda m: m.num_reg_images(), reverse=True)
        )
        placed = {i for _, ids in parts for i in ids}
        for image_id, index in id_to_index.items():
            if index not in self.dropped and image_id not in placed:
                self.dropped[index] = (
                    "matched other photos but could not be placed consistently with them"
                )
        return parts

    def join_models(self, models: list) -> list[tuple[object, list[int]]]:
        """The largest model, plus the photos of other models that can be brought into its frame
        through photos they share (COLMAP lets models overlap): [(model, image ids it places)].

        The other model is moved by the similarity that maps the shared photo's camera onto
        itself, scaled by the depths of the points both models triangulated from its features;
        a shared photo whose two poses then disagree by more than MAX_JOIN_ROTATION_DEG or
        MAX_JOIN_CENTRE_REL of the scene size refuses the join.
        """
        main = models[0]
        parts = [(main, [i for i in main.reg_image_ids() if main.image(i).has_pose])]
        placed = set(parts[0][1])
        centres = np.array([main.image(i).projection_center() for i in placed])
        scene_size = float(np.median(np.linalg.norm(centres - centres.mean(0), axis=1))) or 1.0
        for other in models[1:]:
            ids = [i for i in other.reg_image_ids() if other.image(i).has_pose]
            new = [i for i in ids if i not in placed]
            shared = [i for i in ids if i in placed]
            if not new:
                continue
            joined = False
            similarity = _similarity_through_shared_photo(parts, other, shared)
            if similarity is not None:
                other.transform(similarity)
                joined = all(
                    _poses_agree(_image(parts, i), other.image(i), scene_size) for i in shared
                )
            if joined:
                parts.append((other, new))
                placed.update(new)
                self.stats["joined_models"] = self.stats.get("joined_models", 0) + 1
                continue
            for image_id in new:
                self.dropped[self.id_to_index[image_id]] = (
                    f"formed a separate group of {len(ids)} photos that could not be joined to "
                    f"the main reconstruction of {len(parts[0][1])} photos (too few features "
                    "in common with it)"
                )
        return parts

    def map_from_pair(self):
        """A model from the best pair of photos, then every photo that joins it, or None."""
        import pycolmap

        db = pycolmap.Database.open(self.database_path)
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
            options.num_threads = self.threads
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
            model.extract_colors_for_all_images(self.images_dir)
            return model
        return None

    # -- result ----------------------------------------------------------------------------
    def write_result(self, infos: list[PhotoInfo], image_ids: dict[int, int], parts) -> Path:
        owner = {i: model for model, ids in parts for i in ids}  # image id -> model placing it
        registered = [info for info in infos if image_ids[info.index] in owner]
        arrays: dict[str, np.ndarray] = {}
        views = []
        view_of_image = {}
        for k, info in enumerate(registered):
            model = owner[image_ids[info.index]]
            image = model.image(image_ids[info.index])
            camera = model.camera(image.camera_id)
            f, cx, cy, k1 = (float(v) for v in camera.params)
            cam_from_world = np.eye(4)
            cam_from_world[:3] = image.cam_from_world().matrix()
            arrays[f"{k}/K"] = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
            arrays[f"{k}/cam_from_world"] = cam_from_world
            views.append(
                {
                    "index": info.index,
                    "name": info.name,
                    "file": info.file,
                    "width": info.width,
                    "height": info.height,
                    "scaled_width": info.scaled_width,
                    "scaled_height": info.scaled_height,
                    "scale": info.scale,
                    "radial_k1": k1,
                }
            )
            view_of_image[image_ids[info.index]] = k
        xyz, rgb, track_length, view = [], [], [], []
        poses = {i: owner[i].image(i).cam_from_world() for i in view_of_image}
        for model, ids in parts:
            # A joined model contributes the points that its own new photos see.
            mine = set(ids)
            for point in model.points3D.values():
                observers = sorted(
                    {e.image_id for e in point.track.elements} & view_of_image.keys()
                )
                if len(observers) < 2 or not mine.intersection(observers):
                    continue
                # The nearest camera sees the point at the finest detail: it owns the point.
                depths = [(poses[i] * point.xyz)[2] for i in observers]
                xyz.append(point.xyz)
                rgb.append(point.color)
                track_length.append(len(observers))
                view.append(view_of_image[observers[int(np.argmin(depths))]])
        arrays["points/xyz"] = np.asarray(xyz, np.float32).reshape(-1, 3)
        arrays["points/rgb"] = np.asarray(rgb, np.uint8).reshape(-1, 3)
        arrays["points/track_length"] = np.asarray(track_length, np.int32)
        arrays["points/view"] = np.asarray(view, np.int32)
        header = {
            "views": views,
            "dropped": [
                {"name": self.spec["photos"][i]["name"], "reason": reason}
                for i, reason in sorted(self.dropped.items())
            ],
            "timings_s": self.timings,
            "stats": self.stats,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        path = self.work / "sparse_result.npz"
        np.savez(path, **arrays)
        return path

    def run(self) -> Path:
        import pycolmap

        pycolmap.set_random_seed(0)
        infos = self.timed("load", self.load)
        if len(infos) < 2:
            raise SfmFailure(f"{len(infos)} usable photos: a reconstruction needs at least 2")
        image_ids = self.create_database(infos)
        self.timed("features", lambda: self.extract(infos, image_ids))
        if len(infos) - len(self.dropped.keys() & {i.index for i in infos}) < 2:
            raise SfmFailure("fewer than 2 photos have enough features to match")
        self.timed("matching", lambda: self.match(infos, image_ids))
        before_mapping = dict(self.dropped)
        failure = SfmFailure("COLMAP could not place the photos")
        usable = {image_ids[i.index] for i in infos if i.index not in self.dropped}
        try:
            parts = self.timed("mapping", lambda: self.map(infos, image_ids))
        except SfmFailure as exc:
            parts, failure = [], exc
        placed = {i for _, ids in parts for i in ids}
        if len(placed) < RETRY_BELOW_PLACED * len(usable):
            # A hard set (wide baselines, little texture): worth 5x the matching time.
            first = (parts, dict(self.dropped))
            self.dropped = dict(before_mapping)
            self.progress(
                "mapping", 0.5, f"{len(placed)} of {len(usable)} photos placed: matching again"
            )
            self.timed("guided_matching", lambda: self.rematch_guided(usable - placed))
            try:
                parts = self.timed("mapping_again", lambda: self.map(infos, image_ids))
            except SfmFailure:
                parts = []
            if sum(len(ids) for _, ids in parts) <= len(placed):
                parts, self.dropped = first
        if not parts:
            raise failure
        return self.write_result(infos, image_ids, parts)

    def timed(self, name: str, step: Callable):
        start, cpu = time.perf_counter(), _cpu_s()
        result = step()
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.stats.setdefault("cpu_s", {})[name] = round(_cpu_s() - cpu, 3)
        return result


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SfmFailure(Exception):
    """A job that cannot succeed, with a message for people."""


def descriptor_votes(descriptors: list[np.ndarray], neighbours: int = 5) -> np.ndarray:
    """(n, n) votes: how often a descriptor of photo a has a descriptor of photo b among its
    ``neighbours`` nearest ones in all other photos. A cheap stand-in for image retrieval."""
    n = len(descriptors)
    owner = np.concatenate([np.full(len(d), k) for k, d in enumerate(descriptors)])  # (D,)
    stacked = np.concatenate(descriptors)  # (D, 128)
    votes = np.zeros((n, n))
    for a, d in enumerate(descriptors):
        if len(d) == 0:
            continue
        similarity = d @ stacked.T  # (m, D)
        similarity[:, owner == a] = -np.inf
        k = min(neighbours, similarity.shape[1] - 1)
        if k <= 0:
            continue
        nearest = np.argpartition(-similarity, k, axis=1)[:, :k]  # (m, k)
        for row in owner[nearest]:
            votes[a, np.unique(row)] += 1
    return votes + votes.T


MAX_JOIN_ROTATION_DEG = 2.0
MAX_JOIN_CENTRE_REL = 0.05


MIN_JOIN_POINTS = 5
MAX_JOIN_SCALE_SPREAD = 0.05


def _similarity_through_shared_photo(parts, other, shared: list[int]):
    """pycolmap.Sim3d taking ``other``'s world to the joined world, or None.

    Through the shared photo with the most features triangulated in both models: camera
    coordinates agree up to the scale s, so X_main = s R_a^T R_b X_other + R_a^T (s t_b - t_a).
    """
    import pycolmap

    best = None
    for image_id in shared:
        a, b = _image(parts, image_id), other.image(image_id)
        main_model = _model_of(parts, image_id)
        pose_a, pose_b = a.cam_from_world(), b.cam_from_world()
        ratios = []
        for pa, pb in zip(a.points2D, b.points2D, strict=True):
            if pa.has_point3D() and pb.has_point3D():
                depth_a = (pose_a * main_model.point3D(pa.point3D_id).xyz)[2]
                depth_b = (pose_b * other.point3D(pb.point3D_id).xyz)[2]
                if depth_a > 0 and depth_b > 0:
                    ratios.append(depth_a / depth_b)
        if len(ratios) >= MIN_JOIN_POINTS and (best is None or len(ratios) > len(best[1])):
            best = (image_id, np.array(ratios))
    if best is None:
        return None
    image_id, ratios = best
    scale = float(np.median(ratios))
    if np.median(np.abs(ratios / scale - 1)) > MAX_JOIN_SCALE_SPREAD:
        return None  # the two models disagree about the shape they share
    pose_a = _image(parts, image_id).cam_from_world()
    pose_b = other.image(image_id).cam_from_world()
    Ra, ta = pose_a.rotation.matrix(), pose_a.translation
    Rb, tb = pose_b.rotation.matrix(), pose_b.translation
    return pycolmap.Sim3d(scale, pycolmap.Rotation3d(Ra.T @ Rb), Ra.T @ (scale * tb - ta))


def _model_of(parts, image_id: int):
    return next(model for model, ids in parts if image_id in ids)


def _image(parts, image_id: int):
    return _model_of(parts, image_id).image(image_id)


def _poses_agree(a, b, scene_size: float) -> bool:
    """Two poses of one photo (pycolmap images) after joining: same orientation and centre."""
    Ra = a.cam_from_world().rotation.matrix()
    Rb = b.cam_from_world().rotation.matrix()
    cos = (np.trace(Ra @ Rb.T) - 1) / 2
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    distance = np.linalg.norm(a.projection_center() - b.projection_center())
    return bool(angle < MAX_JOIN_ROTATION_DEG and distance < MAX_JOIN_CENTRE_REL * scene_size)


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """End this worker as soon as the process that started it is gone (killed with SIGKILL, say),
    instead of computing for nobody until its next message fails. The parent names itself in
    PARENT_PID_VARIABLE, so a parent that died while this process was still starting counts too."""
    parent = int(os.environ.get(PARENT_PID_VARIABLE, os.getppid()))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    _exit_with_parent()
    # Keep the protocol stream for ourselves; whatever C++ prints to stdout lands on stderr.
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    spec = json.loads(Path(argv[0]).read_text())
    child = Child(spec, channel)
    try:
        path = child.run()
    except SfmFailure as exc:
        child.send({"type": "error", "message": str(exc)})
        return 0
    child.send({"type": "result", "path": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
