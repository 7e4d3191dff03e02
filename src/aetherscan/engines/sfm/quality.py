"""How far a model can be believed, measured against evidence it was not fitted to: the verified
matches of every pair of photos it places. The model's two poses and refined cameras imply an
epipolar geometry for the pair; the share of the pair's verified matches that it explains (to
within a few pixels, Sampson distance) says whether the model agrees with what the two photos
show. Unlike solving each pair again, this holds on planar scenes (a printed target under an
object), where a pair's own relative pose is ambiguous, and it needs no random sampling.

A wrong model (a ring folded onto itself, a start locked onto the still background, two sessions
forced together) keeps a low reprojection error, because bundle adjustment fits whatever it is
given; what it cannot do is agree with the pairs it contradicts. The same numbers choose between
mappers (``score``) and give the verdict (``verdict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aetherscan.engines.sfm.loading import PhotoInfo
from aetherscan.engines.sfm.mapping import Candidate

MIN_CHECK_INLIERS = 20  # verified matches for a pair to count as evidence
MAX_CHECKED_PAIRS = 600  # the strongest ones, beyond that (100 photos: ~1000 pairs)
MAX_EPIPOLAR_PX = 4.0  # Sampson distance of a match that the model explains (COLMAP's RANSAC)
MIN_EXPLAINED = 0.7  # share of a pair's verified matches, for the pair to agree with the model
MIN_AGREEING_SHARE = 0.8  # of the checked pairs, for a good model
MIN_PHOTO_AGREEMENT = 0.5  # of a photo's checked pairs, for the photo to be confirmed
MAX_REPROJECTION_PX = 2.0
MIN_MEAN_TRACK_LENGTH = 2.5  # with six photos or more
MIN_PLACED_SHARE = 0.75  # fewer placed: the model covers only part of what was photographed
CONVINCING_SHARE = 0.95  # of the checked pairs agreeing, for a model no mapper need improve
MAX_FOCAL_DISAGREEMENT = 0.1  # one lens in portrait and landscape: the same focal
MAX_FOCAL_FROM_EXIF = 0.25


@dataclass
class PairCheck:
    first: int  # image ids
    second: int
    inliers: int
    explained: float  # share of the verified matches within MAX_EPIPOLAR_PX of the model's
    # The matches lie on one plane (or the camera only turned): many wrong poses explain them
    # as well as the right one, so such a pair can contradict a pose but not confirm it.
    planar: bool = False

    @property
    def agrees(self) -> bool:
        return self.explained >= MIN_EXPLAINED


@dataclass
class ModelChecks:
    """Everything the verdict and the choice of mapper rest on, as plain numbers."""

    placed: int
    usable: int
    reprojection_error_px: float
    mean_track_length: float
    pairs: list[PairCheck] = field(default_factory=list)
    confirmed_photos: int = 0
    unconfirmed_photos: int = 0  # placed, but not tied to the largest group by agreeing pairs
    separate_groups: int = 0
    focal_notes: list[str] = field(default_factory=list)

    @property
    def agreeing_share(self) -> float:
        return sum(p.agrees for p in self.pairs) / len(self.pairs) if self.pairs else 0.0

    @property
    def explained_median(self) -> float:
        return float(np.median([p.explained for p in self.pairs])) if self.pairs else 0.0

    def convincing(self, connected: int) -> bool:
        """Every connected photo placed, confirmed through pairs that could have contradicted
        it, and almost every checked pair agreeing: no other mapper could do better."""
        return (
            self.placed >= connected
            and self.unconfirmed_photos == 0
            and self.agreeing_share >= CONVINCING_SHARE
            and not verdict(self)[1]
        )

    def score(self) -> tuple:
        """Higher is better: photos placed consistently with their own pairs first, then the
        share of agreeing pairs. More photos placed does not count unless they agree."""
        return (self.confirmed_photos, round(self.agreeing_share, 2), -self.reprojection_error_px)

    def summary(self) -> dict:
        return {
            "placed": self.placed,
            "confirmed_photos": self.confirmed_photos,
            "unconfirmed_photos": self.unconfirmed_photos,
            "pairs_checked": len(self.pairs),
            "pairs_agreeing": round(self.agreeing_share, 3),
            "explained_median": round(self.explained_median, 3),
            "reprojection_error_px": round(self.reprojection_error_px, 3),
            "mean_track_length": round(self.mean_track_length, 2),
        }


def check_candidate(candidate: Candidate, infos: dict[int, PhotoInfo], usable: int) -> ModelChecks:
    """``infos``: image id -> PhotoInfo of every photo given to the mapper."""
    import pycolmap

    owner = {i: model for model, ids in candidate.parts for i in ids}
    main = candidate.parts[0][0]
    checks = ModelChecks(
        placed=len(owner),
        usable=usable,
        reprojection_error_px=float(main.compute_mean_reprojection_error()),
        mean_track_length=float(main.compute_mean_track_length()),
        separate_groups=int(candidate.stats.get("separate_groups", 0)),
    )
    planar_configs = _planar_configs()
    db = pycolmap.Database.open(candidate.database)
    pair_ids, geometries = db.read_two_view_geometries()
    evidence = []
    for pair_id, geometry in zip(pair_ids, geometries, strict=True):
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        count = len(geometry.inlier_matches)
        if first in owner and second in owner and count >= MIN_CHECK_INLIERS:
            planar = geometry.config in planar_configs
            evidence.append((count, first, second, geometry.inlier_matches, planar))
    evidence.sort(key=lambda item: -item[0])
    keypoints = {i: db.read_keypoints(i)[:, :2].astype(np.float64) for i in owner}
    db.close()
    for _, first, second, matches, planar in evidence[:MAX_CHECKED_PAIRS]:
        check = _check_pair(owner, keypoints, first, second, matches)
        check.planar = planar
        checks.pairs.append(check)
    checks.confirmed_photos = _confirmed(checks.pairs, set(owner))
    checks.unconfirmed_photos = len(owner) - len(_largest_agreeing_group(checks.pairs))
    checks.focal_notes = _focal_notes(owner, infos)
    return checks


def _check_pair(owner, keypoints, first, second, matches) -> PairCheck:
    model_a, model_b = owner[first], owner[second]
    image_a, image_b = model_a.image(first), model_b.image(second)
    camera_a, camera_b = model_a.camera(image_a.camera_id), model_b.camera(image_b.camera_id)
    # Normalised, undistorted image coordinates (N, 2) through the model's refined cameras.
    rays_a = np.asarray(camera_a.cam_from_img(keypoints[first][matches[:, 0]]), np.float64)
    rays_b = np.asarray(camera_b.cam_from_img(keypoints[second][matches[:, 1]]), np.float64)
    pose_a, pose_b = image_a.cam_from_world(), image_b.cam_from_world()
    R = pose_b.rotation.matrix() @ pose_a.rotation.matrix().T  # cam_b from cam_a
    t = pose_b.translation - R @ pose_a.translation
    t = t / max(np.linalg.norm(t), 1e-12)  # a pure rotation leaves E = [t]x R consistent anyway
    E = _skew(t) @ R
    focal_px = 0.5 * (camera_a.mean_focal_length() + camera_b.mean_focal_length())
    distance_px = focal_px * sampson_distance(E, rays_a, rays_b)
    return PairCheck(first, second, len(matches), float(np.mean(distance_px <= MAX_EPIPOLAR_PX)))


def sampson_distance(E: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """First-order distance (N,) of matches a[i] <-> b[i] (N, 2 normalised coordinates) from the
    epipolar geometry b^T E a = 0, in normalised units."""
    xa = np.column_stack([a, np.ones(len(a))])  # (N, 3)
    xb = np.column_stack([b, np.ones(len(b))])
    Ea = xa @ E.T  # (N, 3): epipolar lines in b
    Etb = xb @ E  # (N, 3): epipolar lines in a
    residual = np.sum(xb * Ea, axis=1)
    norm = Ea[:, 0] ** 2 + Ea[:, 1] ** 2 + Etb[:, 0] ** 2 + Etb[:, 1] ** 2
    return np.abs(residual) / np.sqrt(np.maximum(norm, 1e-300))


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _planar_configs() -> frozenset:
    import pycolmap

    kind = pycolmap.TwoViewGeometryConfiguration
    return frozenset({kind.PLANAR, kind.PANORAMIC, kind.PLANAR_OR_PANORAMIC})


def _agreement_per_photo(pairs: list[PairCheck]) -> dict[int, float]:
    """Image id -> share of its checked pairs that agree with the model (photos with no checked
    pair have no entry: no evidence either way)."""
    agree: dict[int, list[bool]] = {}
    for pair in pairs:
        for image_id in (pair.first, pair.second):
            agree.setdefault(image_id, []).append(pair.agrees)
    return {image_id: float(np.mean(votes)) for image_id, votes in agree.items()}


def _confirmed(pairs: list[PairCheck], placed: set[int]) -> int:
    share = _agreement_per_photo(pairs)
    return sum(1 for i in placed if share.get(i, 0.0) >= MIN_PHOTO_AGREEMENT)


def _largest_agreeing_group(pairs: list[PairCheck]) -> set[int]:
    """The largest set of photos connected through pairs that agree with the model and could
    have contradicted it (not planar)."""
    neighbours: dict[int, set[int]] = {}
    for pair in pairs:
        if pair.agrees and not pair.planar:
            neighbours.setdefault(pair.first, set()).add(pair.second)
            neighbours.setdefault(pair.second, set()).add(pair.first)
    best: set[int] = set()
    seen: set[int] = set()
    for start in neighbours:
        if start in seen:
            continue
        group, frontier = {start}, [start]
        while frontier:
            for other in neighbours[frontier.pop()] - group:
                group.add(other)
                frontier.append(other)
        seen |= group
        best = max(best, group, key=len)
    return best


def contradicted_photos(checks: ModelChecks) -> set[int]:
    """Image ids whose own checked pairs mostly contradict the pose the model gives them."""
    share = _agreement_per_photo(checks.pairs)
    return {image_id for image_id, value in share.items() if value < MIN_PHOTO_AGREEMENT}


def _focal_notes(owner: dict, infos: dict[int, PhotoInfo]) -> list[str]:
    """Focal lengths that contradict each other or the EXIF, per COLMAP camera."""
    cameras: dict[int, tuple[float, PhotoInfo]] = {}
    for image_id, model in owner.items():
        camera = model.camera(model.image(image_id).camera_id)
        cameras.setdefault(camera.camera_id, (float(camera.mean_focal_length()), infos[image_id]))
    notes = []
    for focal, info in cameras.values():
        if info.focal_px and abs(focal / info.focal_px - 1) > MAX_FOCAL_FROM_EXIF:
            notes.append(
                f"the focal length came out at {focal * info.scale:.0f} px where the photos' "
                f"EXIF says {info.focal_px * info.scale:.0f} px"
            )
    # One lens, photos turned by 90 degrees: two COLMAP cameras that must share one focal.
    by_lens: dict[tuple, list[tuple[float, PhotoInfo]]] = {}
    for focal, info in cameras.values():
        make_model_focal = info.camera_key[:4]
        if any(make_model_focal):
            by_lens.setdefault(make_model_focal, []).append((focal, info))
    for group in by_lens.values():
        # At the original resolution: the scales of portrait and landscape copies may differ.
        focals = [focal * info.scale / max(info.width, info.height) for focal, info in group]
        if len(focals) > 1 and max(focals) / min(focals) - 1 > MAX_FOCAL_DISAGREEMENT:
            notes.append(
                "photos taken with one lens came out with focal lengths that differ by "
                f"{100 * (max(focals) / min(focals) - 1):.0f} %"
            )
    return notes


def verdict(checks: ModelChecks) -> tuple[str, list[str]]:
    """``("good" | "uncertain", sentences)``: every failed check is one sentence."""
    reasons = []
    if checks.placed < MIN_PLACED_SHARE * checks.usable:
        reasons.append(
            f"only {checks.placed} of {checks.usable} usable photos could be placed: the model "
            "covers part of what was photographed at best, and may rest on too little"
        )
    if checks.placed == 2:
        reasons.append(
            "two photos fix the poses only up to the focal length assumed for them; add photos "
            "from more angles"
        )
    if not checks.pairs and checks.placed > 2:
        reasons.append("no pair of photos had enough matches to check the model against")
    elif checks.pairs and checks.agreeing_share < MIN_AGREEING_SHARE:
        reasons.append(
            f"only {100 * checks.agreeing_share:.0f} % of the photo pairs agree with the camera "
            "poses of the model (their matched features contradict the poses): some poses are "
            "probably wrong"
        )
    if checks.pairs and checks.unconfirmed_photos:
        reasons.append(
            f"the poses of {checks.unconfirmed_photos} of the {checks.placed} photos are not "
            "confirmed by matches with the others (too few, contradicting, or all on one flat "
            "surface)"
        )
    if checks.reprojection_error_px > MAX_REPROJECTION_PX:
        reasons.append(
            f"points miss their photos by {checks.reprojection_error_px:.1f} px on average"
        )
    if checks.placed >= 6 and checks.mean_track_length < MIN_MEAN_TRACK_LENGTH:
        reasons.append(
            f"points are seen by only {checks.mean_track_length:.1f} photos on average: the "
            "photos overlap little"
        )
    if checks.separate_groups:
        reasons.append(
            f"the photos form {checks.separate_groups + 1} groups that could not be joined "
            "rigidly (the subject may have been moved between sessions): the result shows the "
            "largest group only"
        )
    reasons += checks.focal_notes
    return ("uncertain" if reasons else "good"), reasons
