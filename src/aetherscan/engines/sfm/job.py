"""What one SfM run carries from step to step."""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

# Share of the whole job at the end of each stage (the parent adds densify on top), after the
# shares of wall time measured on 16 hand-held photos (features 43 %, matching 37 %, mapping 5 %,
# dense stereo 10 %) and on 100 (26, 41, 29 %, no dense): a page can estimate the time left
# from the fraction done (docs/benchmarks.md, "Time left").
STAGE_END = {"load": 0.03, "features": 0.40, "matching": 0.72, "mapping": 0.85}
STAGE_START = {"load": 0.0, "features": 0.03, "matching": 0.40, "mapping": 0.72}


class SfmFailure(Exception):
    """A job that cannot succeed, with a message for people."""


@dataclass
class SfmJob:
    """Folders, the photos left out so far (photo index -> reason), statistics, reporting."""

    spec: dict
    channel: TextIO
    dropped: dict[int, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    last_fraction: float = 0.0
    # A second attempt (affine-covariant features) works in a database of its own, and its
    # timings carry a prefix.
    database_name: str = "database.db"
    affine_features: bool = False
    timing_prefix: str = ""

    @property
    def work(self) -> Path:
        return Path(self.spec["work_dir"])

    @property
    def images_dir(self) -> Path:
        return self.work / "images"

    @property
    def masks_dir(self) -> Path:
        """COLMAP's mask folder: ``<image name>.png`` beside each masked image's name."""
        return self.work / "masks"

    @property
    def database_path(self) -> Path:
        return self.work / self.database_name

    @property
    def previews(self) -> bool:
        """Whether to send previews (``aetherscan.engines.sfm.preview``): not in a second
        attempt, whose first pass sent them already."""
        return bool(self.spec.get("previews", True)) and not self.affine_features

    @property
    def threads(self) -> int:
        return int(self.spec.get("num_threads", -1))

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

    def timed(self, name: str, step: Callable):
        """Run ``step()``, adding its wall and CPU seconds to ``name``'s (a step that runs in
        both mapping passes, a mapper or its check, counts both)."""
        start, cpu = time.perf_counter(), _cpu_s()
        result = step()
        name = self.timing_prefix + name
        cpu_s = self.stats.setdefault("cpu_s", {})
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        cpu_s[name] = round(cpu_s.get(name, 0.0) + _cpu_s() - cpu, 3)
        return result


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
