"""What every engine is: photos in, a Reconstruction out, with progress on the way.

The server and the CLI only know this module and ``aetherscan.reconstruction``; adding an engine
touches ``aetherscan/engines`` and nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

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


@dataclass(frozen=True)
class JobOptions:
    """What one job chooses over its engine's defaults; None leaves it to the engine.

    An engine takes an option as a keyword argument of ``reconstruct`` of the same name.
    """

    # Bundle-adjust Fast3R's cameras after PnP (COLMAP's cameras always are).
    refine_poses: bool | None = None

    def chosen(self) -> dict[str, Any]:
        """The options this job sets, by name."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobOptions:
        """Options from a client's JSON object; ValueError with a sentence when one is wrong."""
        if data is None:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown job option {unknown[0]!r}; the options are {', '.join(sorted(known))}"
            )
        for name, value in data.items():
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"the job option {name!r} is true or false, got {value!r}")
        return cls(**data)


def job_options(engine: Engine) -> list[str]:
    """The job options ``engine`` takes."""
    accepted = inspect.signature(engine.reconstruct).parameters
    return [f.name for f in fields(JobOptions) if f.name in accepted]


def lacking_option(engine: Engine, options: JobOptions) -> str | None:
    """Why ``engine`` cannot run a job with ``options`` (an option it does not take), or None."""
    missing = [name for name in options.chosen() if name not in job_options(engine)]
    if not missing:
        return None
    return f"the {engine.name} engine has no job option {missing[0]!r}; leave it out"


def run_engine(
    engine: Engine, photos: Sequence[Photo], observer: Observer, options: JobOptions
) -> Reconstruction:
    """``engine.reconstruct`` with the options the job chose; an engine that lacks one of them
    fails the job with a sentence rather than ignoring what was asked."""
    chosen = options.chosen()
    if not chosen:
        return engine.reconstruct(photos, observer)
    lacking = lacking_option(engine, options)
    if lacking:
        raise EngineError(lacking)
    return engine.reconstruct(photos, observer, **chosen)  # type: ignore[call-arg]
