"""A still background behind a turning object: the turntable capture.

When the camera stands still and the object turns, everything behind the object matches at the
same pixel in every photo. Those matches describe no motion at all and contradict the object's:
left in, they pull pairs towards the identity (the synthetic turntable in docs/benchmarks.md:
AUC@30 0.02, 15 photos "placed"). The signature is plain in the raw matches: in a walk-around
capture almost no match stays within a few pixels between two photos, while behind a turntable
most do, even for photos half a turn apart. Only then are such matches removed (COLMAP's
``filter_stationary_matches``) and the pairs verified again: on hand-held object captures the
filter is not needed and was measured to cost placed photos.
"""

from __future__ import annotations

import numpy as np

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.matching import MatchPlan, verification_options

STILL_PX = 4.0  # a match that moves less than this is still (COLMAP's stationary default)
MIN_PAIR_MATCHES = 50  # pairs with fewer raw matches say little about the background
MIN_STILL_SHARE = 0.3  # median over pairs of their share of still matches, for a still camera


def still_share_per_pair(job: SfmJob) -> list[float]:
    """For every pair with enough raw matches: the share of matches that do not move."""
    import pycolmap

    db = pycolmap.Database.open(job.database_path)
    pair_ids, matches = db.read_all_matches()
    keypoints: dict[int, np.ndarray] = {}
    shares = []
    for pair_id, pair_matches in zip(pair_ids, matches, strict=True):
        if len(pair_matches) < MIN_PAIR_MATCHES:
            continue
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        for image_id in (first, second):
            if image_id not in keypoints:
                keypoints[image_id] = db.read_keypoints(image_id)[:, :2]
        moved = np.linalg.norm(
            keypoints[first][pair_matches[:, 0]] - keypoints[second][pair_matches[:, 1]], axis=1
        )
        shares.append(float(np.mean(moved < STILL_PX)))
    db.close()
    return shares


def remove_still_background(job: SfmJob, plan: MatchPlan) -> bool:
    """Detect a still background; when there is one, verify every pair again without its
    matches. Returns whether it did."""
    import pycolmap

    if job.stats.get("still_background"):
        return True  # found by an earlier attempt, whose matching here left those matches out
    shares = still_share_per_pair(job)
    median = float(np.median(shares)) if shares else 0.0
    job.stats["still_match_share"] = round(median, 3)
    if median < MIN_STILL_SHARE:
        return False
    job.progress("matching", 0.9, "the background stands still: matching the object alone")
    db = pycolmap.Database.open(job.database_path)
    db.clear_two_view_geometries()
    db.close()
    pairs_file = job.work / "pairs.txt"
    pairs_file.write_text("".join(f"{plan.names[a]} {plan.names[b]}\n" for a, b in plan.pairs))
    pycolmap.verify_matches(job.database_path, pairs_file, verification_options(job, still=True))
    job.stats["still_background"] = True
    return True
