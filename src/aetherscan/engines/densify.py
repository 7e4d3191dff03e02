"""Dense points on the CPU from posed photos: rectified stereo pairs through OpenCV's semi-global
matching, depth consistency across views, and fusion into one cloud without duplicates.

1. Each view is scaled to a working resolution (``DensifyOptions.max_image_px`` on the long side).
2. Each view (the reference) gets up to two partner views: those that see most sparse points
   under a good triangulation angle, whose epipoles lie well outside both images (rectifiable
   pairs) and whose rectified image is not squeezed against the reference's. The second partner
   is matched only when the first leaves most of the view without depth.
3. Each pair is rectified (``aetherscan.geometry.rectification``), matched with ``cv2.StereoSGBM``
   over the disparity range of the sparse points both views see, and its disparities turned into
   a depth map on the reference view's pixel grid.
4. A reference pixel is kept when the depth maps of at least ``min_consistent_views`` other views
   agree with its depth; its confidence is the number of views that agree, itself included (>= 2),
   plus ``UNCONTRADICTED`` when none of the views checked sees through it (sees farther along the
   same ray): points that one does are twice as far from the surface, measured in the tests.
5. Fusion: the kept depth is the mean of the agreeing views' depths along the pixel's ray. When
   view i emits a point that view k confirms, the pixels of k around it are marked as taken, so
   k does not emit a near-copy of it (where k sees the surface much finer, only the one under
   the point). Each point therefore belongs to exactly one view, and views are finalised one by
   one as soon as the depth maps they are checked against exist, which is when ``on_view``
   hears of them.

Legend: V views, M sparse points, N points of one view, (h, w) working size of one view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from aetherscan.geometry.camera import camera_center, colmap_K_to_opencv_K
from aetherscan.geometry.rectification import Rectification, rectify_pair

log = logging.getLogger(__name__)

ViewCallback = Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]
ProgressCallback = Callable[[float, str], None]
ViewPoints = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]

INVALID_DISPARITY = -1e4  # far below any disparity, so that interpolating across it is detectable
UNCONTRADICTED = 0.5  # added to the confidence of a point that no view checked sees through


@dataclass(frozen=True)
class DensifyOptions:
    """Settings of ``densify``; the defaults were chosen by measurement (docs/benchmarks.md)."""

    max_image_px: int = 1024  # long side of the working resolution; larger photos are scaled down
    partners_per_view: int = 2  # stereo partners of each reference view, at most
    enough_coverage: float = 0.5  # no further partner once this share of textured pixels has depth
    check_views: int = 6  # views each depth map is checked against (the best-scored ones)
    min_consistent_views: int = 1  # other views that must agree with a depth for it to be kept
    depth_tolerance: float = 0.01  # relative depth difference that still counts as agreement
    best_angle_deg: float = 10.0  # preferred triangulation angle of a stereo pair
    max_angle_deg: float = 40.0  # pairs seeing their points under wider angles are not matched
    min_shared_points: int = 10  # sparse points a pair must both see
    epipole_margin: float = 0.5  # epipoles must lie this many image sizes outside either image
    disparity_margin: float = 0.1  # widen the sparse disparity range by this share on each side
    max_disparities: int = 256  # longest search; deeper pairs are matched at lower resolution
    block_size: int = 5  # SGBM matching window (odd)
    uniqueness_ratio: int = 10  # SGBM: margin by which the best match must win, percent
    min_texture: float = 2.5  # grey-level standard deviation in a 7x7 window below which a pixel
    # is too plain to match (clear sky, white walls): its disparity would be a guess


@dataclass
class _View:
    """One view at working resolution."""

    rgb: np.ndarray  # (h, w, 3) uint8
    gray: np.ndarray  # (h, w) uint8
    textured: np.ndarray  # (h, w) bool, where matching is meaningful
    K: np.ndarray  # (3, 3) OpenCV convention, working resolution
    pose: np.ndarray  # (4, 4) cam_from_world

    @property
    def size(self) -> tuple[int, int]:
        return self.gray.shape[1], self.gray.shape[0]

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and depths (N,)."""
        cam = xyz @ self.pose[:3, :3].T + self.pose[:3, 3]  # (N, 3)
        pixels = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return pixels[:, :2] / pixels[:, 2:], cam[:, 2]

    def sees(self, xyz: np.ndarray) -> np.ndarray:
        uv, z = self.project(xyz)
        w, h = self.size
        return (
            (z > 0)
            & (uv[:, 0] > -0.5)
            & (uv[:, 0] < w - 0.5)
            & (uv[:, 1] > -0.5)
            & (uv[:, 1] < h - 0.5)
        )


def densify(
    images: list[np.ndarray],
    K: list[np.ndarray],
    cam_from_world: list[np.ndarray],
    sparse_xyz: np.ndarray | None = None,
    on_view: ViewCallback | None = None,
    progress: ProgressCallback | None = None,
    options: DensifyOptions | None = None,
    masks: list[np.ndarray | None] | None = None,
) -> list[ViewPoints]:
    """Dense coloured points for posed photos.

    ``images`` are upright (H, W, 3) uint8 RGB photos without lens distortion (pinhole cameras),
    at the resolution that the 3x3 ``K`` (pixel-centre convention: image centre at (W/2, H/2))
    refers to; ``cam_from_world`` are 4x4 OpenCV world-to-camera poses. ``sparse_xyz`` (M, 3),
    the structure-from-motion points, sets depth ranges and chooses stereo partners; without it
    the depth range of a pair is guessed from where the two optical axes meet.

    Returns, per view, ``(xyz (N, 3) float32, rgb (N, 3) uint8, confidence (N,) float32, depth)``.
    The points of different views are disjoint: each surface point belongs to one view. Confidence
    is the number of views whose depth maps agree on the point (>= 1 + min_consistent_views),
    plus ``UNCONTRADICTED`` (0.5) when no view checked sees through it.
    ``depth`` is the view's checked depth map along its camera z axis at the working resolution
    (h, w), 0 where unknown, or None when the view had no stereo partner; its intrinsics are K
    scaled by (w / W, h / H). ``on_view(view_index, xyz, rgb, confidence)`` receives each view's
    points (possibly none) as soon as they are final, in no particular order; ``progress(fraction,
    message)`` reports progress. ``masks``: per view None or an (H, W) bool array, False where
    the pixel is not the subject (background): no depth, and so no point, comes from there.
    """
    options = options or DensifyOptions()
    views = _prepare_views(
        images, K, cam_from_world, options.max_image_px, options.min_texture, masks
    )
    count = len(views)
    report = progress or (lambda fraction, message: None)
    if sparse_xyz is None or len(sparse_xyz) == 0:
        guide, guessed = _axis_crossings(views), True
    else:
        guide = np.asarray(sparse_xyz, np.float64).reshape(-1, 3)
        guide, guessed = guide[np.all(np.isfinite(guide), axis=1)], False
    visible = np.stack([view.sees(guide) for view in views]) if len(guide) else None  # (V, M)
    partners, checks = _choose_views(views, guide, visible, options)

    raw_depth: list[np.ndarray | None] = [None] * count
    consumed = [np.zeros(view.gray.shape, bool) for view in views]
    results: list[ViewPoints | None] = [None] * count
    pending = set(range(count))
    readers = [{k} for k in range(count)]  # the views whose fusion reads raw_depth[k]
    for i, checked in enumerate(checks):
        for k in checked:
            readers[k].add(i)
    for index in range(count):
        raw_depth[index] = _view_depth(
            index, views, partners[index], guide, visible, guessed, options
        )
        report(0.9 * (index + 1) / count, f"stereo {index + 1} of {count}")
        for ready in sorted(i for i in pending if max([i, *checks[i]]) <= index):
            results[ready] = _fuse_view(ready, views, raw_depth, checks[ready], consumed, options)
            pending.discard(ready)
            for k in (ready, *checks[ready]):
                readers[k].discard(ready)
                if not readers[k]:
                    raw_depth[k] = None  # read by no one any more: keeps memory bounded
            if on_view is not None:
                on_view(ready, *results[ready][:3])
    report(1.0, f"{sum(len(r[0]) for r in results if r is not None):,} dense points")
    return [r for r in results if r is not None]


def _view_depth(
    index: int,
    views: list[_View],
    partners: list[int],
    guide: np.ndarray,
    visible: np.ndarray | None,
    guessed: bool,
    options: DensifyOptions,
) -> np.ndarray | None:
    """Depth map of one view from its partners, best first, until enough of it is covered."""
    view, merged = views[index], None
    for partner in partners:
        depth = _pair_depth(view, views[partner], guide, visible, guessed, index, partner, options)
        if depth is None:
            continue
        merged = depth if merged is None else _merge_depths(merged, depth, options.depth_tolerance)
        coverage = np.count_nonzero(merged) / max(1, np.count_nonzero(view.textured))
        log.debug("view %d: %.2f of its textured pixels have a depth", index, coverage)
        if coverage >= options.enough_coverage:
            break
    return merged


def _prepare_views(
    images: list[np.ndarray],
    Ks: list[np.ndarray],
    poses: list[np.ndarray],
    max_image_px: int,
    min_texture: float,
    masks: list[np.ndarray | None] | None = None,
) -> list[_View]:
    masks = masks if masks is not None else [None] * len(images)
    if not len(images) == len(Ks) == len(poses) == len(masks):
        raise ValueError(
            f"expected as many intrinsics and poses as images, got {len(images)} images, "
            f"{len(Ks)} K, {len(poses)} poses and {len(masks)} masks"
        )
    views = []
    for image, K, pose, mask in zip(images, Ks, poses, masks, strict=True):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 images, got {image.shape} {image.dtype}")
        if np.shape(K) != (3, 3) or np.shape(pose) != (4, 4):
            raise ValueError(f"expected 3x3 K and 4x4 poses, got {np.shape(K)}, {np.shape(pose)}")
        height, width = image.shape[:2]
        scale = min(1.0, max_image_px / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        rgb = (
            image
            if (w, h) == (width, height)
            else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        )
        K_work = np.array(K, np.float64)
        K_work[0] *= w / width  # exact with the pixel-centre convention
        K_work[1] *= h / height
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        textured = _local_deviation(gray, 7) >= min_texture
        if mask is not None:
            if mask.shape != (height, width):
                raise ValueError(f"expected a ({height}, {width}) mask, got {mask.shape}")
            textured &= cv2.resize(mask.astype(np.uint8), (w, h), cv2.INTER_NEAREST) > 0
        views.append(
            _View(rgb, gray, textured, colmap_K_to_opencv_K(K_work), np.asarray(pose, np.float64))
        )
    return views


def _local_deviation(gray: np.ndarray, window: int) -> np.ndarray:
    values = gray.astype(np.float32)
    mean = cv2.boxFilter(values, -1, (window, window))
    mean_square = cv2.boxFilter(values * values, -1, (window, window))
    return np.sqrt(np.maximum(mean_square - mean * mean, 0))


def _axis_crossings(views: list[_View]) -> np.ndarray:
    """Stand-in sparse points where no SfM points are given: the closest approach of each two
    optical axes that meet in front of both cameras. (M, 3), possibly empty."""
    centers = [camera_center(v.pose) for v in views]
    axes = [v.pose[2, :3] for v in views]
    points = []
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            a, b, offset = axes[i], axes[j], centers[j] - centers[i]
            cross = a @ b
            denom = 1 - cross**2
            if denom < 1e-6:
                continue
            s = (offset @ a - cross * (offset @ b)) / denom
            t = (cross * (offset @ a) - offset @ b) / denom
            gap = np.linalg.norm(centers[i] + s * a - centers[j] - t * b)
            if s > 0 and t > 0 and gap < 0.2 * min(s, t):
                points.append((centers[i] + s * a + centers[j] + t * b) / 2)
    return np.array(points, np.float64).reshape(-1, 3)


def _choose_views(
    views: list[_View], guide: np.ndarray, visible: np.ndarray | None, options: DensifyOptions
) -> tuple[list[list[int]], list[list[int]]]:
    """Per view: its stereo partners and the views its depths are checked against."""
    scores = _pair_scores(views, guide, visible, options)
    partners, checks = [], []
    for i in range(len(views)):
        order = [int(j) for j in np.argsort(-scores[i]) if scores[i, j] > 0]
        checks.append(order[: options.check_views])
        suitability = {}
        for j in order[: 2 * options.check_views]:
            if _epipoles_outside(views[i], views[j], options.epipole_margin):
                both = guide[visible[i] & visible[j]]  # type: ignore[index]
                suitability[j] = scores[i, j] * _stretch_weight(views[i], views[j], both)
        ranked = sorted(suitability, key=lambda j: -suitability[j])
        partners.append([j for j in ranked if suitability[j] > 0][: options.partners_per_view])
        if not partners[-1]:
            log.info("view %d has no stereo partner: no dense points from it", i)
    return partners, checks


def _pair_scores(
    views: list[_View], guide: np.ndarray, visible: np.ndarray | None, options: DensifyOptions
) -> np.ndarray:
    """(V, V) symmetric: how much good stereo each two views share, summed over the sparse
    points both see, each weighted by its triangulation angle; 0 for unrelated views."""
    count = len(views)
    scores = np.zeros((count, count))
    if visible is None:
        return scores
    shared = visible.astype(np.float32) @ visible.T.astype(np.float32)  # (V, V)
    np.fill_diagonal(shared, 0)
    # Few guide points in all (axis crossings) cannot meet the usual minimum.
    needed = min(options.min_shared_points, max(1, visible.shape[1] // 2))
    centers = np.array([camera_center(v.pose) for v in views])
    # Only the views sharing most points are candidates: linear cost in the number of views.
    candidates = np.argsort(-shared, axis=1)[:, : 3 * options.check_views]
    for i in range(count):
        for j in candidates[i]:
            if scores[i, j] > 0 or shared[i, j] < needed:
                continue
            both = guide[visible[i] & visible[j]]
            ray_i, ray_j = both - centers[i], both - centers[j]
            cosine = np.sum(ray_i * ray_j, axis=1) / (
                np.linalg.norm(ray_i, axis=1) * np.linalg.norm(ray_j, axis=1)
            )
            angle = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
            if np.median(angle) > options.max_angle_deg:
                continue
            # Weight 1 at the preferred angle, 0.5 at half or twice it: narrower angles give
            # noisier depths, wider ones harder matching and longer disparity searches.
            weight = 0.5 ** (np.log2(angle / options.best_angle_deg + 1e-9) ** 2)
            scores[i, j] = scores[j, i] = weight.sum()
    return scores


def _stretch_weight(ref: _View, src: _View, points: np.ndarray) -> float:
    """How alike the two rectified images look around the sparse points, from 1 (same scale)
    down: block matching fails where one image is squeezed or sheared against the other, as when
    one camera stands closer to the surface than the other."""
    rect = rectify_pair(ref.K, ref.pose, ref.size, src.pose)
    if rect is None or len(points) < 3:
        return 0.0
    H_ref, H_src = rect.homographies(ref.K, src.K)
    here = _apply_homography(H_ref, ref.project(points)[0])
    there = _apply_homography(H_src, src.project(points)[0])
    if np.any(here.std(axis=0) < 0.05 * np.array(rect.size)):
        return 1.0  # the points are too close together to tell
    # x_src ~ scale * x_ref + shear * y_ref + c, over the points
    design = np.column_stack([here - here.mean(axis=0), np.ones(len(here))])
    (scale, shear, _), *_ = np.linalg.lstsq(design, there[:, 0], rcond=None)
    if scale <= 0:
        return 0.0
    return float(0.5 ** ((np.log2(scale) / 0.25) ** 2 + (shear / 0.15) ** 2))


def _apply_homography(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    mapped = np.column_stack([uv, np.ones(len(uv))]) @ H.T
    return mapped[:, :2] / mapped[:, 2:]


def _epipoles_outside(a: _View, b: _View, margin: float) -> bool:
    """Whether each camera's centre projects well outside the other's image (or to infinity):
    rectification near an epipole would stretch the image without bound."""
    for view, other in ((a, b), (b, a)):
        point = view.K @ (view.pose[:3, :3] @ camera_center(other.pose) + view.pose[:3, 3])
        w, h = view.size
        if abs(point[2]) < 1e-9 * np.linalg.norm(point):
            continue
        x, y = point[:2] / point[2]
        if -margin * w < x < (1 + margin) * w and -margin * h < y < (1 + margin) * h:
            return False
    return True


def _pair_depth(
    ref: _View,
    src: _View,
    guide: np.ndarray,
    visible: np.ndarray | None,
    guessed: bool,
    ref_index: int,
    src_index: int,
    options: DensifyOptions,
) -> np.ndarray | None:
    """Depth map (h, w) of ``ref`` from stereo with ``src``, 0 where unknown; None when the pair
    cannot be matched."""
    rect = rectify_pair(ref.K, ref.pose, ref.size, src.pose)
    if rect is None or visible is None:
        return None
    both = visible[ref_index] & visible[src_index]
    points = guide[both]
    cam = points @ ref.pose[:3, :3].T + ref.pose[:3, 3]
    rect_depth = (cam @ rect.ref_to_rect.T)[:, 2]
    rect_depth = rect_depth[rect_depth > 0]
    if len(rect_depth) == 0:
        return None
    # The disparities the sparse points predict, widened on both sides for what they miss.
    expected = rect.disparity_from_depth(rect_depth)
    low, high = np.percentile(expected, [1, 99])
    widen = options.disparity_margin * (high - low) + (0.5 * high if guessed else 2.0)
    low, high = low - widen, high + widen
    if high - low > options.max_disparities:
        # Too deep a scene for this baseline: match at a lower resolution instead of
        # dropping depths (the depth map is still sampled at every reference pixel).
        factor = options.max_disparities / (high - low)
        log.debug("pair %d-%d: matching at %.2f x resolution", ref_index, src_index, factor)
        rect = rect.scaled(factor)
        low, high = low * factor, high * factor
    low, high = np.floor(low), np.ceil(high)
    span = min(options.max_disparities, int(np.ceil((high - low) / 16) * 16))
    rect = _crop_to_source(rect.with_source_shift(float(low), span), src, span)
    if rect is None:
        return None
    log.debug("pair %d-%d: %s disparities %d", ref_index, src_index, rect.size, span)
    disparity = _match(ref, src, rect, span, options)
    return _disparity_to_depth(ref, rect, disparity)


def _crop_to_source(rect: Rectification, src: _View, span: int) -> Rectification | None:
    """Keep the part of the rectified pair where reference pixels can find their match: rows
    that the source image covers, and columns up to ``span`` right of it. Semi-global matching
    leaves the first ``span`` columns without disparity, so those stay in front of the window."""
    _, H_src = rect.homographies(src.K, src.K)
    w, h = src.size
    corners = _apply_homography(H_src, np.array([[-0.5, -0.5], [w, -0.5], [-0.5, h], [w, h]]))
    width, height = rect.size
    first = max(span, int(np.floor(corners[:, 0].min())))  # the reference starts at span
    right = min(width, int(np.ceil(corners[:, 0].max())) + span)
    top = max(0, int(np.floor(corners[:, 1].min())))
    bottom = min(height, int(np.ceil(corners[:, 1].max())) + 1)
    if right - first < 16 or bottom - top < 16:
        return None
    return rect.cropped(first - span, top, right, bottom)


def _match(
    ref: _View, src: _View, rect: Rectification, span: int, options: DensifyOptions
) -> np.ndarray:
    """Disparities (in rectified reference pixels) as float32, INVALID_DISPARITY where unknown."""
    H_ref, H_src = rect.homographies(ref.K, src.K)
    size = rect.size
    left = cv2.warpPerspective(ref.gray, H_ref, size, flags=cv2.INTER_LINEAR)
    right = cv2.warpPerspective(src.gray, H_src, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(
        np.full(src.gray.shape, 255, np.uint8), H_src, size, flags=cv2.INTER_NEAREST
    )
    block = options.block_size
    matcher = cv2.StereoSGBM.create(
        minDisparity=0,
        numDisparities=span,
        blockSize=block,
        P1=8 * block * block,
        P2=32 * block * block,
        disp12MaxDiff=1,
        uniquenessRatio=options.uniqueness_ratio,
        speckleWindowSize=100,
        speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    fixed = matcher.compute(left, right)  # (height, width) int16, 16 x disparity
    disparity = fixed.astype(np.float32) / 16
    valid = fixed >= 0
    # Matches that land outside the source photo (on the black border) are guesses.
    rows, cols = np.nonzero(valid)
    target = np.clip(np.round(cols - disparity[rows, cols]).astype(np.int64), 0, size[0] - 1)
    valid[rows[inside[rows, target] == 0], cols[inside[rows, target] == 0]] = False
    disparity[~valid] = INVALID_DISPARITY
    return disparity


def _disparity_to_depth(ref: _View, rect: Rectification, disparity: np.ndarray) -> np.ndarray:
    """Sample rectified disparities at the reference's own pixels and turn them into depths."""
    w, h = ref.size
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    H_ref, _ = rect.homographies(ref.K, ref.K)
    denom = H_ref[2, 0] * u + H_ref[2, 1] * v + H_ref[2, 2]
    map_x = ((H_ref[0, 0] * u + H_ref[0, 1] * v + H_ref[0, 2]) / denom).astype(np.float32)
    map_y = ((H_ref[1, 0] * u + H_ref[1, 1] * v + H_ref[1, 2]) / denom).astype(np.float32)
    nearest = cv2.remap(disparity, map_x, map_y, cv2.INTER_NEAREST, borderValue=INVALID_DISPARITY)
    linear = cv2.remap(disparity, map_x, map_y, cv2.INTER_LINEAR, borderValue=INVALID_DISPARITY)
    # Interpolating across a missing disparity or a depth edge shows as a jump.
    valid = (nearest >= 0) & (np.abs(linear - nearest) < 1) & (linear + rect.source_shift_px > 0.5)
    valid &= ref.textured
    # Rectified depth Z of the point on the ray of (u, v) is z_ref * (ref_to_rect @ ray)_z.
    ray_z = rect.ref_to_rect[2] @ np.linalg.inv(ref.K)  # (3,)
    stretch = ray_z[0] * u + ray_z[1] * v + ray_z[2]
    depth = np.zeros((h, w), np.float32)
    depth[valid] = rect.depth_from_disparity(linear[valid]) / stretch[valid]
    return depth


def _merge_depths(depth: np.ndarray, other: np.ndarray, tolerance: float) -> np.ndarray:
    """One depth map from two: agreeing depths are averaged, a lone one is kept, disagreeing
    ones are dropped."""
    both = (depth > 0) & (other > 0)
    agree = both & (np.abs(depth - other) <= tolerance * depth)
    merged = np.where(depth > 0, depth, other)
    merged[agree] = (depth[agree] + other[agree]) / 2
    merged[both & ~agree] = 0
    return merged


def _fuse_view(
    index: int,
    views: list[_View],
    raw_depth: list[np.ndarray | None],
    checks: list[int],
    consumed: list[np.ndarray],
    options: DensifyOptions,
) -> ViewPoints:
    """Check a view's depths against other views, average the depths that agree, and emit the
    points that no earlier view has taken."""
    view, depth = views[index], raw_depth[index]
    if depth is None:
        return _no_points(None)
    width = view.size[0]
    pixel = np.flatnonzero(depth > 0)  # (N,) flat pixel indices
    u = (pixel % width).astype(np.float32)
    v = (pixel // width).astype(np.float32)
    z = depth.ravel()[pixel]
    agreeing = np.ones(len(z), np.int32)
    contradicted = np.zeros(len(z), bool)
    scale_sum = np.ones(len(z), np.float32)
    confirmations = []
    for other in checks:
        other_depth = raw_depth[other]
        if other_depth is None:
            continue
        col, row, z_other, offset = _project_pixels(view, views[other], u, v, z)
        there = _nearest_pixel(col, row, views[other].size)  # -1 outside
        seen = other_depth.ravel()[there]
        agree = (there >= 0) & (np.abs(seen - z_other) <= options.depth_tolerance * z_other)
        agreeing += agree
        # That view sees farther than the point along its ray: the point floats in space the
        # view saw through (the usual error at depth edges).
        contradicted |= (there >= 0) & (seen > z_other * (1 + options.depth_tolerance))
        # Scaling a point along its ray here by s moves its depth there from z_other to
        # offset + s * (z_other - offset); the s that matches the depth seen there is its vote.
        with np.errstate(divide="ignore", invalid="ignore"):
            scale_sum += np.where(agree, (seen - offset) / (z_other - offset), 0)
        confirmations.append((other, agree, col, row, z_other))
    keep = agreeing >= 1 + options.min_consistent_views
    z = z * (scale_sum / agreeing)
    checked = np.zeros_like(depth)
    checked.ravel()[pixel[keep]] = z[keep]
    emit = keep & ~consumed[index].ravel()[pixel]
    for other, agree, col, row, z_other in confirmations:
        taken = np.flatnonzero(emit & agree)
        # How many pixels there one pixel here spans: where it is about one or less, the point
        # takes the 2x2 pixels around it there, so that the other view does not emit its own
        # near-copy; where the other view sees finer, it keeps its pixels in between.
        footprint = (views[other].K[0, 0] / z_other[taken]) / (view.K[0, 0] / z[taken])
        _take_pixels(consumed[other], col[taken], row[taken], footprint < 1.5)
    u, v, z, pixel = u[emit], v[emit], z[emit], pixel[emit]
    world_from_pixel = (np.linalg.inv(view.pose)[:3, :3] @ np.linalg.inv(view.K)).astype(np.float32)
    cam_center = np.linalg.inv(view.pose)[:3, 3:].astype(np.float32)
    xyz = (world_from_pixel @ np.stack([u * z, v * z, z]) + cam_center).T  # (N, 3)
    return (
        np.ascontiguousarray(xyz, np.float32),
        view.rgb.reshape(-1, 3)[pixel],
        (agreeing[emit] + np.where(contradicted[emit], 0, UNCONTRADICTED)).astype(np.float32),
        checked,
    )


def _project_pixels(
    view: _View, other: _View, u: np.ndarray, v: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Project pixels (u, v) of ``view`` at depths z into ``other``: pixel coordinates there
    (column, row) and depths there, and the depth in ``other`` of the centre of ``view``."""
    relative = other.pose @ np.linalg.inv(view.pose)  # this camera -> other camera
    M = (other.K @ relative[:3, :3] @ np.linalg.inv(view.K)).astype(np.float32)
    e = (other.K @ relative[:3, 3]).astype(np.float32)
    # Homogeneous pixel there = z * M @ (u, v, 1) + e, written out row by row (fast in numpy).
    depth = z * (M[2, 0] * u + M[2, 1] * v + M[2, 2]) + e[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        col = (z * (M[0, 0] * u + M[0, 1] * v + M[0, 2]) + e[0]) / depth
        row = (z * (M[1, 0] * u + M[1, 1] * v + M[1, 2]) + e[1]) / depth
    col[depth <= 0] = np.nan  # behind the camera: nowhere in its image
    return col, row, depth, float(e[2])


def _nearest_pixel(col: np.ndarray, row: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Flat index of the pixel that covers each (column, row) of an image of ``size``, -1 for
    points outside it."""
    w, h = size
    with np.errstate(invalid="ignore"):
        x = np.floor(col + 0.5)
        y = np.floor(row + 0.5)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return np.where(inside, y * w + x, -1).astype(np.int32)


def _take_pixels(taken: np.ndarray, col: np.ndarray, row: np.ndarray, coarse: np.ndarray) -> None:
    """Mark the pixel under each point (all inside the image) as taken, and for ``coarse``
    points also the 2x2 pixels whose centres surround it."""
    h, w = taken.shape
    flat = taken.ravel()
    flat[_nearest_pixel(col, row, (w, h))] = True
    left = np.floor(col[coarse]).astype(np.int32)
    top = np.floor(row[coarse]).astype(np.int32)
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = left + dx, top + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            flat[y[inside] * w + x[inside]] = True


def _no_points(depth: np.ndarray | None) -> ViewPoints:
    return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.float32), depth
