"""Step 2: SIFT features at each photo's own resolution; photos with too few features (small or
soft images) are extracted again from a 2x upsampled octave, which costs 4x and finds up to 10x
the features, when a trial on one of them shows that it does. Masked pixels give no features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo
from aetherscan.engines.sfm.preview import first_look

# Photos with fewer features than this at their own resolution get the upsampled octave too.
MIN_FEATURES_FAST = 1500
MIN_UPSAMPLING_GAIN = 1.5  # features at 2x over features at 1x, measured on one photo
MIN_FEATURES_USABLE = 30
MAX_FEATURES = 8192


def extract_features(job: SfmJob, infos: list[PhotoInfo], image_ids: dict[int, int]) -> None:
    import pycolmap

    names = [info.file for info in infos]
    job.stage("features", f"finding features in {len(names)} photos")
    fast = _extraction_options(job, first_octave=0)
    probe_path = job.work / "probe.db"
    _extract_to(job, probe_path, names, fast)
    if job.previews:
        job.timed("first_look", lambda: first_look(job, infos, probe_path))
    # The same random state from here on with or without a first look, however far its
    # mapper got in its time: the result must not depend on the preview or the machine's load.
    pycolmap.set_random_seed(0)
    probe = pycolmap.Database.open(probe_path)
    probe_ids = {n: _image_id(probe, n) for n in names}
    counts = {n: probe.num_keypoints_for_image(probe_ids[n]) for n in names}
    sparse = [n for n in names if counts[n] < MIN_FEATURES_FAST]
    upsampled = _extraction_options(job, first_octave=-1)
    if sparse:
        # Upsampling pays off for photos whose detail lies below the pixel scale (downscaled
        # phone photos: 10x the features) and is wasted on smooth ones (renders: 1.2x for 4x
        # the time). One photo tells which.
        sample = min(sparse, key=lambda name: counts[name])
        trial_path = job.work / "trial.db"
        _extract_to(job, trial_path, [sample], upsampled)
        trial = pycolmap.Database.open(trial_path)
        gain = trial.num_keypoints_for_image(_image_id(trial, sample)) / max(counts[sample], 1)
        trial.close()
        trial_path.unlink()
        job.stats["upsampling_gain"] = round(gain, 2)
        if gain < MIN_UPSAMPLING_GAIN:
            sparse = []
    db = pycolmap.Database.open(job.database_path)
    for info in infos:
        if info.file not in sparse:
            image_id = image_ids[info.index]
            db.write_keypoints(image_id, probe.read_keypoints(probe_ids[info.file]))
            db.write_descriptors(image_id, probe.read_descriptors(probe_ids[info.file]))
    probe.close()
    db.close()
    probe_path.unlink()
    job.stats["upsampled_photos"] = len(sparse)
    if sparse:
        job.progress(
            "features",
            0.25,
            f"{len(sparse)} photos have little detail: looking again at twice the resolution",
        )
        # In groups, so that the parent hears how far it got (4x the time of the first pass).
        group = max(4, len(sparse) // 8)
        for start in range(0, len(sparse), group):
            pycolmap.extract_features(
                job.database_path,
                job.images_dir,
                image_names=sparse[start : start + group],
                reader_options=_reader_options(job),
                extraction_options=upsampled,
                device=pycolmap.Device.cpu,
            )
            done = min(start + group, len(sparse))
            job.progress(
                "features",
                0.25 + 0.75 * done / len(sparse),
                f"{len(sparse)} photos have little detail: looked again at twice the "
                f"resolution at {done} of them",
            )
    db = pycolmap.Database.open(job.database_path)
    found = {info.index: db.num_keypoints_for_image(image_ids[info.index]) for info in infos}
    db.close()
    job.stats["features_per_photo_median"] = float(np.median(list(found.values())))
    for info in infos:
        if found[info.index] < MIN_FEATURES_USABLE:
            job.dropped[info.index] = (
                f"only {found[info.index]} features found: the photo is blank, blurred or "
                "too dark to match"
            )


def _image_id(db, name: str) -> int:
    image = db.read_image_with_name(name)
    if image is None:
        raise RuntimeError(f"COLMAP wrote no image named {name} in {db}")
    return image.image_id


def _reader_options(job: SfmJob):
    import pycolmap

    options = pycolmap.ImageReaderOptions()
    if job.stats.get("masked_photos"):
        # COLMAP reads <mask folder>/<image name>.png, and needs one for every photo.
        options.mask_path = str(job.masks_dir)
    return options


def _extract_to(job: SfmJob, database_path: Path, names: list[str], options) -> None:
    import pycolmap

    pycolmap.extract_features(
        database_path,
        job.images_dir,
        image_names=names,
        camera_mode=pycolmap.CameraMode.PER_IMAGE,
        reader_options=_reader_options(job),
        extraction_options=options,
        device=pycolmap.Device.cpu,
    )


def _extraction_options(job: SfmJob, first_octave: int):
    import pycolmap

    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = job.threads
    options.sift.first_octave = first_octave
    options.sift.max_num_features = MAX_FEATURES
    # Affine-covariant regions and domain-size pooling: features that survive wide baselines
    # (the second attempt on hard small sets), at about 2.5x the time.
    options.sift.estimate_affine_shape = job.affine_features
    options.sift.domain_size_pooling = job.affine_features
    return options
