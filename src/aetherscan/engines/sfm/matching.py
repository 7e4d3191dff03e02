"""Step 3: which pairs to match, and matching them with geometric verification.

All pairs up to ``EXHAUSTIVE_MAX_PHOTOS``; beyond that each photo is matched to its neighbours in
input order plus the photos that share the most quick descriptor votes with it (no vocabulary
tree: that needs a download, which this wheel aborts on). A second, guided pass re-matches the
pairs of photos that the first mapping could not place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo

# Below this many photos every pair is matched: the pruned plan would not save pairs.
EXHAUSTIVE_MAX_PHOTOS = 30
SEQUENTIAL_NEIGHBOURS = 3  # each side, in input order
RETRIEVAL_NEIGHBOURS = 10
RETRIEVAL_DESCRIPTORS = 256  # per photo, the largest-scale ones
RANSAC_SEED = 0  # verification repeats from run to run
# Pairs per matching call: the first block, then as many as take about BLOCK_S, within bounds.
FIRST_BLOCK_PAIRS = 30
MIN_BLOCK_PAIRS, MAX_BLOCK_PAIRS = 20, 1000
BLOCK_S = 3.0


@dataclass
class MatchPlan:
    pairs: list[tuple[int, int]]  # image ids
    names: dict[int, str]  # image id -> image name in the database


def match_photos(job: SfmJob, infos: list[PhotoInfo], image_ids: dict[int, int]) -> MatchPlan:
    job.stage("matching", "choosing which photos to match")
    usable = [info for info in infos if info.index not in job.dropped]
    ids = [image_ids[info.index] for info in usable]
    strategy = job.spec.get("matching", "auto")
    if strategy == "exhaustive" or (strategy == "auto" and len(ids) <= EXHAUSTIVE_MAX_PHOTOS):
        pairs = [(ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids))]
        job.stats["matching"] = "exhaustive"
    else:
        pairs = _pruned_pairs(job, ids)
        job.stats["matching"] = (
            f"{SEQUENTIAL_NEIGHBOURS} neighbours each side + {RETRIEVAL_NEIGHBOURS} most similar"
        )
    job.stats["pairs"] = len(pairs)
    plan = MatchPlan(pairs, {image_ids[info.index]: info.file for info in usable})
    match_pairs(job, plan, plan.pairs, guided=False, stage="matching", what="pairs")
    return plan


def verification_options(job: SfmJob, *, still: bool = False):
    """Two-view geometry as COLMAP verifies it, with a fixed RANSAC seed, and with ``still``,
    matches that do not move between the photos removed (a still background behind a turning
    object: ``aetherscan.engines.sfm.background``)."""
    import pycolmap

    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.random_seed = RANSAC_SEED
    options.filter_stationary_matches = (
        still
        or bool(job.stats.get("still_background"))  # found earlier: later matching keeps it
        or job.spec.get("still_background") == "always"
    )
    return options


def match_pairs(
    job: SfmJob,
    plan: MatchPlan,
    pairs: list[tuple[int, int]],
    *,
    guided: bool,
    stage: str,
    what: str,
) -> None:
    import pycolmap

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = job.threads
    # Guided: match again under the verified two-view geometry. Many more inliers across wide
    # baselines (the flowerpot fixtures go from 0 to 5 of 8 photos placed), 5x the CPU.
    matching.guided_matching = guided
    verification = verification_options(job)
    # Each call costs a set-up (about 25 % more CPU at 16 pairs a call): keep calls large, but
    # not so large that the parent hears nothing for long (a person watches the progress): the
    # first block is small, and each next one is sized from the time a pair took so far.
    start, block, spent = 0, FIRST_BLOCK_PAIRS, 0.0
    while start < len(pairs):
        chunk = pairs[start : start + block]
        pairs_file = job.work / "pairs.txt"
        pairs_file.write_text("".join(f"{plan.names[a]} {plan.names[b]}\n" for a, b in chunk))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pairs_file
        began = time.perf_counter()
        pycolmap.match_image_pairs(
            job.database_path,
            matching_options=matching,
            pairing_options=pairing,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
        spent += time.perf_counter() - began
        start += len(chunk)
        job.progress(stage, start / len(pairs), f"matched {start} of {len(pairs)} {what}")
        per_pair = spent / start
        block = int(min(max(BLOCK_S / max(per_pair, 1e-6), MIN_BLOCK_PAIRS), MAX_BLOCK_PAIRS))


def rematch_guided(job: SfmJob, plan: MatchPlan, unplaced: set[int]) -> None:
    """Match the pairs of photos not placed yet again, guided by their two-view geometry."""
    import pycolmap

    pairs = [(a, b) for a, b in plan.pairs if a in unplaced or b in unplaced]
    db = pycolmap.Database.open(job.database_path)
    for a, b in pairs:
        db.delete_matches(a, b)
        db.delete_two_view_geometry(a, b)
    db.close()
    job.stats["guided_pairs"] = len(pairs)
    match_pairs(job, plan, pairs, guided=True, stage="mapping", what="pairs again, guided")


def _pruned_pairs(job: SfmJob, ids: list[int]) -> list[tuple[int, int]]:
    """Neighbours in input order plus the most similar photos by descriptor votes."""
    import pycolmap

    db = pycolmap.Database.open(job.database_path)
    descriptors = []
    for image_id in ids:
        keypoints = db.read_keypoints(image_id)  # (M, 6): x, y, affine a11 a12 a21 a22
        desc = np.asarray(db.read_descriptors(image_id).data, np.float32)  # (M, 128)
        scale = np.sqrt(
            np.abs(keypoints[:, 2] * keypoints[:, 5] - keypoints[:, 3] * keypoints[:, 4])
        )
        keep = np.argsort(-scale)[:RETRIEVAL_DESCRIPTORS]
        d = desc[keep]
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
        descriptors.append(d)
    db.close()
    votes = descriptor_votes(descriptors)
    n = len(ids)
    chosen = set()
    for a in range(n):
        for b in range(max(0, a - SEQUENTIAL_NEIGHBOURS), min(n, a + SEQUENTIAL_NEIGHBOURS + 1)):
            if a != b:
                chosen.add((min(a, b), max(a, b)))
        for b in np.argsort(-votes[a])[:RETRIEVAL_NEIGHBOURS]:
            if b != a and votes[a, b] > 0:
                chosen.add((min(a, int(b)), max(a, int(b))))
    return [(ids[a], ids[b]) for a, b in sorted(chosen)]


def descriptor_votes(descriptors: list[np.ndarray], neighbours: int = 5) -> np.ndarray:
    """(n, n) votes: how often a descriptor of photo a has a descriptor of photo b among its
    ``neighbours`` nearest ones in all other photos. A cheap stand-in for image retrieval."""
    n = len(descriptors)
    owner = np.concatenate([np.full(len(d), k) for k, d in enumerate(descriptors)])  # (D,)
    stacked = np.concatenate(descriptors)  # (D, 128)
    votes = np.zeros((n, n))
    for a, d in enumerate(descriptors):
        if len(d) == 0:
            continue
        similarity = d @ stacked.T  # (m, D)
        similarity[:, owner == a] = -np.inf
        k = min(neighbours, similarity.shape[1] - 1)
        if k <= 0:
            continue
        nearest = np.argpartition(-similarity, k, axis=1)[:, :k]  # (m, k)
        for row in owner[nearest]:
            votes[a, np.unique(row)] += 1
    return votes + votes.T
