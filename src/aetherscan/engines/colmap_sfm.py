"""The sparse half of the COLMAP engine, run in a child process: photos in, cameras and a sparse
cloud out (``python -m aetherscan.engines.colmap_sfm SPEC.json``).

Some pycolmap calls abort the whole process instead of raising (a failed CHECK in C++), so this
module never runs inside the server: ``aetherscan.engines.colmap`` starts it as a child and turns
a crash into an ``EngineError``. It talks to its parent with one JSON object per line on the
original stdout (``progress``, ``result``, ``error``); everything the C++ side prints goes to
stderr, which the parent keeps in a log file.

The steps, each in a module of ``aetherscan.engines.sfm`` and measured in docs/benchmarks.md:
load, features, matching, mapping with every mapper in ``spec["mappers"]``, a check of each
model against the verified pairs, and the best model by that check. When it places too few
photos, the pairs of the unplaced ones are matched again, guided, and mapped again.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aetherscan.engines.colmap import PARENT_PID_VARIABLE
from aetherscan.engines.sfm.background import remove_still_background
from aetherscan.engines.sfm.features import extract_features
from aetherscan.engines.sfm.foreground import still_camera_masks
from aetherscan.engines.sfm.job import SfmFailure, SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo, create_database, load_photos
from aetherscan.engines.sfm.mapping import MAPPERS, Candidate, connected_photos, run_mapper
from aetherscan.engines.sfm.matching import match_photos, rematch_guided
from aetherscan.engines.sfm.quality import (
    ModelChecks,
    check_candidate,
    contradicted_photos,
    verdict,
)
from aetherscan.engines.sfm.result import write_result

RETRY_BELOW_PLACED = 0.8  # fewer photos placed than this share: match again, guided
AFFINE_MAX_PHOTOS = 24  # a second attempt with affine-covariant features, on small hard sets


@dataclass
class Attempt:
    """One pass from features to a checked model, in one database."""

    image_ids: dict[int, int]  # photo index -> image id
    usable: int  # photos with enough features
    best: tuple[Candidate, ModelChecks] | None
    dropped: dict[int, str]  # job.dropped at its end

    @property
    def placed(self) -> int:
        return len(self.best[0].placed) if self.best else 0

    def score(self) -> tuple:
        return self.best[1].score() if self.best else (-1,)


def run(job: SfmJob) -> Path:
    import pycolmap

    pycolmap.set_random_seed(0)
    infos = job.timed("load", lambda: load_photos(job))
    if len(infos) < 2:
        raise SfmFailure(f"{len(infos)} usable photos: a reconstruction needs at least 2")
    loaded = dict(job.dropped)
    attempt = attempt_to_place(job, infos)
    if attempt.placed < RETRY_BELOW_PLACED * attempt.usable and len(infos) <= AFFINE_MAX_PHOTOS:
        # Wide baselines on a small set: features that survive them, at 2.5x the extraction.
        job.progress("mapping", 0.6, f"{attempt.placed} photos placed: trying other features")
        first, job.dropped = attempt, dict(loaded)
        job.database_name, job.affine_features, job.timing_prefix = (
            "database_affine.db",
            True,
            "affine_",
        )
        second = attempt_to_place(job, infos)
        job.stats["affine_attempt"] = {"placed": second.placed, "before": first.placed}
        attempt = second if second.score() > first.score() else first
        job.dropped = attempt.dropped
    if attempt.best is None:
        raise SfmFailure(
            "COLMAP found matches but could not place any pair of photos in 3D: the photos may "
            "be taken from one spot or overlap too little (walk around the subject, with each "
            "photo overlapping the previous one by half)"
        )
    by_id = {attempt.image_ids[info.index]: info for info in infos}
    candidate, checks = leave_out_contradicted(job, *attempt.best, by_id, attempt.usable)
    for index, reason in candidate.dropped.items():
        job.dropped.setdefault(index, reason)
    judged, reasons = verdict(checks)
    job.stats["mapper"] = candidate.mapper
    job.stats["check"] = checks.summary()
    quality = {"verdict": judged, "reasons": reasons}
    return write_result(job, infos, attempt.image_ids, candidate.parts, quality)


def attempt_to_place(job: SfmJob, infos: list[PhotoInfo]) -> Attempt:
    """Features, matching, a still background, mapping; again guided when too few are placed."""
    image_ids = job.timed("database", lambda: create_database(job, infos))
    job.timed("features", lambda: extract_features(job, infos, image_ids))
    usable = [info for info in infos if info.index not in job.dropped]
    if len(usable) < 2:
        raise SfmFailure("fewer than 2 photos have enough features to match")
    plan = job.timed("matching", lambda: match_photos(job, infos, image_ids))
    if job.spec.get("still_background", "auto") == "auto":
        still = job.timed("still_background", lambda: remove_still_background(job, plan))
        if still and job.spec.get("automatic_masks", True) and "automatic_masks" not in job.stats:
            written = job.timed("automatic_masks", lambda: still_camera_masks(job, infos))
            job.stats["automatic_masks"] = written
    id_to_index = {image_ids[info.index]: info.index for info in usable}
    by_id = {image_ids[info.index]: info for info in usable}

    before_mapping = dict(job.dropped)
    best = job.timed("mapping", lambda: map_and_check(job, id_to_index, by_id))
    if best is None or len(best[0].placed) < RETRY_BELOW_PLACED * len(usable):
        first_dropped, job.dropped = job.dropped, dict(before_mapping)
        # A hard set (wide baselines, little texture): worth 5x the matching time.
        placed = best[0].placed if best else set()
        job.progress(
            "mapping", 0.5, f"{len(placed)} of {len(usable)} photos placed: matching again"
        )
        job.timed("guided_matching", lambda: rematch_guided(job, plan, set(id_to_index) - placed))
        again = job.timed("mapping_again", lambda: map_and_check(job, id_to_index, by_id))
        if again is not None and (best is None or again[1].score() > best[1].score()):
            best = again
        else:
            job.dropped = first_dropped
    return Attempt(image_ids, len(usable), best, dict(job.dropped))


def map_and_check(
    job: SfmJob, id_to_index: dict[int, int], by_id: dict[int, PhotoInfo]
) -> tuple[Candidate, ModelChecks] | None:
    """The mappers asked for, in turn, on the current matches, until one gives a convincing
    model; the best model by its checks, or None. A second mapper costs up to a third more time
    (28 s on 100 photos): it runs only where the first one leaves doubt."""
    connected = connected_photos(job, id_to_index)
    results: list[tuple[Candidate, ModelChecks]] = []
    for mapper in job.spec.get("mappers", MAPPERS):
        if results and results[-1][1].convincing(len(connected)):
            break
        candidate = job.timed(
            f"mapper_{mapper}", lambda m=mapper: run_mapper(job, m, id_to_index, connected, by_id)
        )
        if candidate is None:
            continue
        checks = job.timed(
            f"check_{mapper}", lambda c=candidate: check_candidate(c, by_id, len(id_to_index))
        )
        job.stats.setdefault("candidates", []).append({"mapper": mapper, **checks.summary()})
        job.stats.setdefault("mappers_run", []).append(mapper)
        results.append((candidate, checks))
    if not results:
        return None
    return max(results, key=lambda result: result[1].score())


def leave_out_contradicted(
    job: SfmJob, candidate: Candidate, checks: ModelChecks, by_id: dict[int, PhotoInfo], usable: int
) -> tuple[Candidate, ModelChecks]:
    """The model without the photos whose own pairs contradict their poses, checked again: a
    photo left out with its reason beats a photo shown in the wrong place."""
    wrong = contradicted_photos(checks) & candidate.placed
    if not wrong or len(candidate.placed - wrong) < 2:
        return candidate, checks
    parts = [(model, [i for i in ids if i not in wrong]) for model, ids in candidate.parts]
    parts = [(model, ids) for model, ids in parts if ids]
    dropped = dict(candidate.dropped)
    for image_id in wrong:
        dropped[by_id[image_id].index] = (
            "COLMAP placed it, but its matches with the other photos contradict that pose: "
            "left out rather than shown in the wrong place"
        )
    pruned = Candidate(candidate.mapper, parts, candidate.database, dropped, candidate.stats)
    job.stats["contradicted_photos"] = len(wrong)
    return pruned, check_candidate(pruned, by_id, usable)


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
    job = SfmJob(json.loads(Path(argv[0]).read_text()), channel)
    try:
        path = run(job)
    except SfmFailure as exc:
        job.send({"type": "error", "message": str(exc)})
        return 0
    job.send({"type": "result", "path": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
