"""Step 1: decode the photos, downscale them, write their masks, and create the database with
one COLMAP camera per (EXIF camera, focal, image size), the EXIF focal as its prior."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.photos import PhotoError, open_photo_reduced

JPEG_QUALITY = 95
EXIF_IFD = 0x8769
EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110
EXIF_FOCAL_MM, EXIF_FOCAL_35MM = 0x920A, 0xA405
DIAGONAL_35MM = math.hypot(36.0, 24.0)
DEFAULT_FOCAL_FACTOR = 1.2  # focal / long side when EXIF says nothing (COLMAP's default)
# A mask that keeps less than this share of its photo leaves too little to match: ignored.
MIN_MASK_KEPT = 0.01


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
    mask: str = "none"  # "given" (a file or the photo's alpha), "automatic", or "none"


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


def camera_key(exif: Image.Exif, width: int, height: int) -> tuple:
    try:
        sub = exif.get_ifd(EXIF_IFD)
        focal = (str(sub.get(EXIF_FOCAL_MM, "")), str(sub.get(EXIF_FOCAL_35MM, "")))
        make, model = str(exif.get(EXIF_MAKE, "")).strip("\x00 "), str(exif.get(EXIF_MODEL, ""))
    except Exception:  # a broken EXIF block only loses the grouping
        focal, make, model = ("", ""), "", ""
    return (make, model.strip("\x00 "), *focal, width, height)


def read_mask(photo: dict, size: tuple[int, int]) -> np.ndarray | None:
    """The photo's mask as a bool array of ``size`` (upright), True = subject, or None.

    From the mask file when the photo has one, else from the photo's own alpha channel. A mask
    of another size than the photo, or one that keeps almost nothing, is not used: it cannot be
    the photo's (the server refuses such uploads; this guards the CLI and the Python API).
    """
    if photo.get("mask"):
        with Image.open(photo["mask"]) as file:
            keep = np.asarray(ImageOps.exif_transpose(file).convert("L")) > 0
    else:
        with Image.open(photo["path"]) as file:
            if "A" not in file.getbands() and "transparency" not in file.info:
                return None
            alpha = ImageOps.exif_transpose(file).convert("RGBA").getchannel("A")
            keep = np.asarray(alpha) >= 128
    if keep.shape != (size[1], size[0]) or keep.mean() < MIN_MASK_KEPT or keep.all():
        return None
    return keep


def _write_mask(keep: np.ndarray, size: tuple[int, int], scale: float, path: Path) -> None:
    """COLMAP's convention: 0 = ignore. Downscaled with the photo's box, so pixels line up."""
    image = Image.fromarray(keep.astype(np.uint8) * 255)
    if (image.width, image.height) != size:
        box = (0.0, 0.0, size[0] * scale, size[1] * scale)
        image = image.resize(size, Image.Resampling.BOX, box=box).point(lambda v: 255 * (v >= 128))
    image.save(path)


def load_photos(job: SfmJob) -> list[PhotoInfo]:
    job.stage("load", f"decoding {len(job.spec['photos'])} photos")
    job.images_dir.mkdir(parents=True, exist_ok=True)
    job.masks_dir.mkdir(parents=True, exist_ok=True)
    photos = job.spec["photos"]
    max_px = int(job.spec["max_image_px"])

    def prepare(item: tuple[int, dict]) -> PhotoInfo | str:
        index, photo = item
        try:
            # A big JPEG decodes at a reduced scale (pixel i covering pixels k*i to k*(i+1)).
            image, (width, height), k = open_photo_reduced(
                Path(photo["path"]), max_px, max_megapixels=job.spec["max_megapixels"]
            )
        except PhotoError as exc:
            return f"could not be decoded: {exc}"
        exif = image.getexif()  # decoded with the pixels, orientation already applied
        # One scale for both axes (original = scale * scaled), so fx = fy survives the way
        # back; the last fraction of a pixel row or column is cropped for that.
        scale = max(1.0, max(width, height) / max_px)
        size = (max(1, math.floor(width / scale)), max(1, math.floor(height / scale)))
        if size != image.size:
            box = (0.0, 0.0, size[0] * scale / k, size[1] * scale / k)
            image = image.resize(size, Image.Resampling.LANCZOS, box=box)
        file = f"{index:05d}.jpg"
        image.save(job.images_dir / file, quality=JPEG_QUALITY)
        try:
            keep = read_mask(photo, (width, height))
        except (OSError, ValueError, Image.DecompressionBombError):
            keep = None  # an unreadable mask costs the mask, not the photo
        if keep is not None:
            _write_mask(keep, size, scale, job.masks_dir / f"{file}.png")
        focal = focal_prior_px(exif, width, height)
        return PhotoInfo(
            index=index,
            name=photo["name"],
            file=file,
            width=width,
            height=height,
            scaled_width=size[0],
            scaled_height=size[1],
            camera_key=camera_key(exif, *size),
            scale=scale,
            focal_px=None if focal is None else focal / scale,
            mask="none" if keep is None else "given",
        )

    infos = []
    # Pillow decodes and resizes without the GIL: threads use every core.
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        for k, result in enumerate(pool.map(prepare, enumerate(photos))):
            if isinstance(result, str):
                job.dropped[k] = result
            else:
                infos.append(result)
            job.progress("load", (k + 1) / len(photos), f"decoded {k + 1} of {len(photos)}")
    masked = [info for info in infos if info.mask != "none"]
    job.stats["masked_photos"] = len(masked)
    if masked:
        # COLMAP wants a mask for every photo once it has a mask folder: all subject elsewhere.
        for info in infos:
            if info.mask == "none":
                size = (info.scaled_height, info.scaled_width)
                Image.fromarray(np.full(size, 255, np.uint8)).save(
                    job.masks_dir / f"{info.file}.png"
                )
    return infos


def create_database(job: SfmJob, infos: list[PhotoInfo]) -> dict[int, int]:
    """Cameras (one per camera key), rigs, frames and images; returns photo index -> image id."""
    import pycolmap

    db = pycolmap.Database.open(job.database_path)
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
    job.stats["cameras"] = len(cameras)
    return image_ids
