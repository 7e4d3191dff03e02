"""An automatic foreground mask for still-camera captures, with no learned weights.

When the camera stands still (``background`` found the still background), every background pixel
shows the same colour in every photo, while the turning object changes under it. The per-pixel
spread of the photos over time separates the two: the object is where the spread is large,
cleaned of specks and with its holes filled. The masks keep dense points off the background,
whose points would otherwise land in the object's frame in a different place for every photo.
They are only used where they are plausible (a subject neither tiny nor the whole photo), and
the result says ``masks: "automatic"`` when they were.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo

MIN_SPREAD = 6.0  # grey levels of standard deviation over time: the sensor noise is ~1-2
MIN_SUBJECT_SHARE = 0.02  # of the photo, for the mask to be believed
MAX_SUBJECT_SHARE = 0.9
SPECK_PX = 5  # morphological opening: the size of noise specks removed, in pixels


def still_camera_masks(job: SfmJob, infos: list[PhotoInfo]) -> int:
    """Write a mask for each photo without one; returns how many were written (0: none used)."""
    sizes = {(info.scaled_width, info.scaled_height) for info in infos}
    if len(sizes) != 1:
        return 0  # photos of different sizes or orientations are not one still camera
    subject = _moving_pixels(job, infos)
    if subject is None:
        return 0
    share = float(subject.mean())
    job.stats["automatic_mask_share"] = round(share, 3)
    if not MIN_SUBJECT_SHARE <= share <= MAX_SUBJECT_SHARE:
        return 0
    written = 0
    for info in infos:
        if info.mask == "none":
            Image.fromarray(subject.astype(np.uint8) * 255).save(job.masks_dir / f"{info.file}.png")
            info.mask = "automatic"
            written += 1
    return written


def _moving_pixels(job: SfmJob, infos: list[PhotoInfo]) -> np.ndarray | None:
    """(H, W) bool: where the photos differ over time, cleaned up. Streams the photos (Welford),
    so 100 photos cost one photo's memory."""
    if len(infos) < 3:
        return None
    first = infos[0]
    mean = np.zeros((first.scaled_height, first.scaled_width))
    square = np.zeros_like(mean)
    for count, info in enumerate(infos, start=1):
        with Image.open(job.images_dir / info.file) as file:
            gray = np.asarray(file.convert("L"), np.float64)
        delta = gray - mean
        mean += delta / count
        square += delta * (gray - mean)
    spread = np.sqrt(square / (len(infos) - 1))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (SPECK_PX, SPECK_PX))
    opened = cv2.morphologyEx((spread >= MIN_SPREAD).astype(np.uint8), cv2.MORPH_OPEN, kernel)
    moving = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel, iterations=3)
    # The subject is the largest moving region, its holes filled (flat parts of the object
    # change little over time, but they lie inside its outline).
    count, labels, areas, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(areas[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)
