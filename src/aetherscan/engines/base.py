"""What every engine is: photos in, a Reconstruction out, with progress on the way.

The server and the CLI only know this module and ``aetherscan.reconstruction``; adding an engine
touches ``aetherscan/engines`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class Cancelled(Exception):
    """Raised from an observer to stop a reconstruction early."""


class Observer:
    """Receives progress and partial results. Subclass and override what you need.

    * ``progress``: a stage name from ``STAGES``, the fraction of the whole job done (0..1),
      and a sentence for people.
    * ``points``: a batch of final points (world frame of the final result) as soon as they
      exist. The batches are disjoint and their union is ``Reconstruction.point_cloud()``.

    Either may raise ``Cancelled`` to stop the job.
    """

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        pass

    def points(self, cloud: PointCloud) -> None:
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
