"""Engine plug-ins for the ``aetherscan worker`` processes of the queue tests
(``--engine queue_engines:scripted``); TEST DOUBLES, not engines.

They read their knobs from the environment the test gives the worker:
``AETHERSCAN_TEST_DELAY_S`` (the pause after each view) and ``AETHERSCAN_TEST_POINTS``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

from server_kit import ScriptedEngine

from aetherscan.engines.base import Observer, Photo
from aetherscan.reconstruction import Quality, Reconstruction


def scripted() -> ScriptedEngine:
    return ScriptedEngine(
        delay_s=float(os.environ.get("AETHERSCAN_TEST_DELAY_S", "0.01")),
        points_per_view=int(os.environ.get("AETHERSCAN_TEST_POINTS", "1200")),
    )


class Stubborn:
    """Hangs on photos named ``hang*`` and ignores every exception meant to stop it (a soft
    time limit included): only killing its process ends it. Other jobs are ScriptedEngine's."""

    name = "stubborn"

    def __init__(self) -> None:
        self.scripted = scripted()

    def reconstruct(
        self, photos: Sequence[Photo], observer: Observer | None = None
    ) -> Reconstruction:
        if any(photo.name.startswith("hang") for photo in photos):
            while True:
                with contextlib.suppress(BaseException):  # the point of this double
                    time.sleep(0.05)
        return self.scripted.reconstruct(photos, observer)


def stubborn() -> Stubborn:
    return Stubborn()


class Refining:
    """Takes the job option ``refine_poses`` and says in its verdict what it was given, so a
    test can see that the option travelled to the worker."""

    name = "refining"

    def __init__(self) -> None:
        self.scripted = scripted()

    def reconstruct(
        self,
        photos: Sequence[Photo],
        observer: Observer | None = None,
        *,
        refine_poses: bool | None = None,
    ) -> Reconstruction:
        result = self.scripted.reconstruct(photos, observer)
        result.quality = Quality("good", [f"refine_poses={refine_poses}"])
        return result


def refining() -> Refining:
    return Refining()
