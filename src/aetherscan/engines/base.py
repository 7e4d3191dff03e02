"""What every engine is: photos in, a Reconstruction out, with progress on the way.

The server and the CLI only know this module and ``aetherscan.reconstruction``; adding an engine
touches ``aetherscan/engines`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from aetherscan.reconstruction import PointCloud, Reconstruction


@dataclass(frozen=True)
class Photo:
    """One input photo: a label for people (the client's filename) and the file on disk.

    ``mask_path``: an optional mask for the photo, any image format, of the photo's size as it
    is shown (after its EXIF orientation): black (0) marks pixels to ignore (background, the
    turntable, the photographer's shadow), anything else marks the subject. A photo with an alpha
    channel and no mask is masked by its alpha (transparent = ignore).
    """

    name: str
    path: Path
    mask_path: Path | None = None


@dataclass(frozen=True)
class PreviewCamera:
    """A camera as a preview places it: ``K`` (3x3, pixels of the original upright photo) and
    ``cam_from_world`` (4x4, OpenCV axes) in the preview's own world frame."""

    name: str
    width: int
    height: int
    K: np.ndarray
    cam_from_world: np.ndarray


@dataclass(frozen=True)
class Preview:
    """A provisional look at a result still being computed: the cameras placed so far and a
    sample of sparse points, in a world frame of their own (each preview may have another).

    Each preview replaces the one before. None of it is part of the result: the result's points
    (``Observer.points``) and cameras replace every preview.
    """

    cameras: list[PreviewCamera]
    cloud: PointCloud
    message: str  # for people: what the preview shows ("first look: 9 of 16 photos placed")


class Cancelled(Exception):
    """Raised from an observer to stop a reconstruction early."""


class Observer:
    """Receives progress and partial results. Subclass and override what you need.

    * ``progress``: a stage name from ``STAGES``, the fraction of the whole job done (0..1),
      and a sentence for people.
    * ``points``: a batch of final points (world frame of the final result) as soon as they
      exist. The batches are disjoint and their union is ``Reconstruction.point_cloud()``.
    * ``preview``: a provisional look (see ``Preview``) while the result is computed; engines
      that have nothing to show early never call it.

    Either may raise ``Cancelled`` to stop the job.
    """

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        pass

    def points(self, cloud: PointCloud) -> None:
        pass

    def preview(self, preview: Preview) -> None:
        pass


STAGES = (
    "load",  # decoding photos
    "inference",  # Fast3R forward pass
    "features",  # COLMAP: SIFT extraction
    "matching",  # COLMAP: feature matching
    "mapping",  # COLMAP: structure from motion
    "poses",  # Fast3R: focal and PnP
    "densify",  # COLMAP: dense stereo and fusion
    "points",  # gathering the final cloud
    "done",
)


class Engine(Protocol):
    """An engine turns photos into a Reconstruction."""

    name: str

    def reconstruct(
        self, photos: Sequence[Photo], observer: Observer | None = None
    ) -> Reconstruction: ...


class EngineError(Exception):
    """A reconstruction that cannot be done, with a message for people (too few photos, ...)."""
