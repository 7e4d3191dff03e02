"""The Fast3R engine: all photos through the network in one forward pass, then cameras and points.

Post-processing follows the original demo (SPEC §4):

1. One shared focal length from view 0's global pointmap (Weiszfeld), principal point at the
   centre of each model image.
2. Each view's ``cam_from_world`` by RANSAC-PnP (SQPnP) of its global pointmap against its pixels.
3. Each view's local pointmap moved into the world by a similarity fitted on its 15 % most
   confident global points; the cloud is made of these aligned local points, coloured by the input
   pixels and ranked by the local head's confidence (their own confidence).

Decisions beyond the original, stated once:

* A view whose global confidence never reaches ``min_view_confidence`` (1.5, the original
  viewer's threshold for hiding a view) is dropped: the network did not place it. So is a view
  whose PnP fails (the original keeps it with an identity pose, which is wrong). Each drop is
  reported in ``Reconstruction.dropped`` with the reason. View 0 still defines the world frame
  when it is dropped.
* Points need ``confidence >= min_confidence``; then the ``max_points_per_view`` most confident
  ones per view are kept. Each view's points are stored in descending confidence.
* ``K`` is mapped from the model crop to the original photo; Fast3R's pixel grid puts pixel
  centres at integers (OpenCV), AetherScan at +0.5 (``geometry.camera``).
* Each job is planned before the forward pass (``models.memory``): the plan picks the heads'
  chunk of views, and a job whose smallest plan does not fit the device's free memory is refused
  with a sentence (how many views would fit) instead of running out of memory midway.
* With ``refine_poses`` the PnP cameras are refined by bundle adjustment over features matched
  with the pointmaps as guides (``engines.fast3r_refine``). A refined view's cloud is then
  lifted from its depth map (scaled to agree with the refined tracks it sees) through its refined
  camera, so that points and cameras agree to the pixel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aetherscan.engines.base import EngineError, Observer, Photo
from aetherscan.engines.fast3r_refine import (
    RefinedCamera,
    RefineReport,
    RefineView,
    at_pixels,
    refine_poses,
)
from aetherscan.geometry.align import align_local_to_global
from aetherscan.geometry.camera import (
    crop_K_to_photo_K,
    intrinsics_matrix,
    opencv_K_to_colmap_K,
    transform_points,
)
from aetherscan.geometry.focal import estimate_focal
from aetherscan.geometry.pnp import solve_pnp
from aetherscan.models.memory import MemoryPlan, plan_memory
from aetherscan.models.preprocess import IMAGE_SIZES, ModelInput, input_shapes, preprocess
from aetherscan.photos import PhotoError, open_photo
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View

log = logging.getLogger(__name__)

MIN_PHOTOS = 2
MAX_PHOTOS = 1000  # rows of the image-index embedding table (SPEC §2.3)
MIN_VIEW_CONFIDENCE = 1.5
PNP_ITERATIONS = 100
PNP_REPROJECTION_PX = 5.0
# A camera that explains less of its own point map than this is doubtful (the original keeps
# every pixel with confidence > 1 for PnP, so a right pose explains most of them).
MIN_PNP_INLIER_SHARE = 0.5
# Refined cameras that miss their own matches by more than this (median) are doubtful.
MAX_REFINED_ERROR_PX = 2.0
ALIGN_TOP_FRACTION = 0.15
# With refined poses: the share of the poses stage that PnP takes, the rest is the refinement.
PNP_SHARE_WHEN_REFINING = 0.3
# A refined view's depth takes the scale of the tracks it sees when it sees at least this many.
MIN_DEPTH_SCALE_SAMPLES = 20

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Share of the whole job's progress at the start of each stage.
_STAGE_START = {"load": 0.0, "inference": 0.1, "poses": 0.7, "points": 0.85, "done": 1.0}


@dataclass
class _ViewMaps:
    """One view's network output on the CPU, float32."""

    global_pts: np.ndarray  # (H, W, 3) in view 0's camera frame
    global_conf: np.ndarray  # (H, W)
    local_pts: np.ndarray  # (H, W, 3) in the view's own camera frame, own scale
    local_conf: np.ndarray  # (H, W)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise EngineError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was asked for, but this machine has no CUDA GPU")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The dtype the forward pass computes in. ``int8`` (CPU only) computes in fp32 around
    int8 matrix products: bf16 and fp16 are emulated, and slow, on CPUs without AVX-512 BF16."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == "int8":
        if device.type != "cpu":
            raise EngineError("dtype int8 is a CPU mode; on a GPU use bf16 or fp16")
        return torch.float32
    if dtype not in _DTYPES:
        raise EngineError(f"unknown dtype {dtype!r}; choose auto, fp32, bf16, fp16 or int8")
    return _DTYPES[dtype]


class Fast3REngine:
    """Photos to a Reconstruction with the Fast3R network; the model loads once, here."""

    name = "fast3r"

    def __init__(
        self,
        weights: str | Path | torch.nn.Module,
        device: str = "auto",
        dtype: str = "auto",
        image_size: int = 512,
        min_confidence: float = 1.0,
        max_points_per_view: int | Literal["all"] = 10_000,
        seed: int | None = None,
        min_view_confidence: float = MIN_VIEW_CONFIDENCE,
        refine_poses: bool = False,
    ) -> None:
        """``weights``: a model folder, a Hugging Face hub id, or a model already built (tests).

        ``seed`` makes the random image-index embedding (and so the result) reproducible.
        ``refine_poses``: bundle-adjust the cameras after PnP (the default of each job; a job's
        own ``refine_poses`` overrides it).
        """
        if image_size not in IMAGE_SIZES:
            raise EngineError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
        if max_points_per_view != "all" and (
            not isinstance(max_points_per_view, int) or max_points_per_view < 1
        ):
            raise EngineError(
                f"max_points_per_view must be a positive integer or 'all', got {max_points_per_view!r}"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.dtype_name = dtype
        self.image_size = image_size
        self.min_confidence = float(min_confidence)
        self.max_points_per_view = max_points_per_view
        self.seed = seed
        self.min_view_confidence = float(min_view_confidence)
        self.refine_poses = bool(refine_poses)
        if isinstance(weights, torch.nn.Module):
            self.model = weights.to(self.device).eval()
        else:
            self.model = _load_model(weights, self.device)
        self.int8 = dtype == "int8"
        if self.int8:
            from aetherscan.models.int8 import quantize_int8

            quantize_int8(self.model)  # type: ignore[arg-type]  # a Fast3R, or a test double

    # -- the job

    def reconstruct(
        self,
        photos: Sequence[Photo],
        observer: Observer | None = None,
        *,
        refine_poses: bool | None = None,
    ) -> Reconstruction:
        """``refine_poses``: this job's choice; None: the engine's default."""
        observer = observer or Observer()
        refine = self.refine_poses if refine_poses is None else refine_poses
        if len(photos) < MIN_PHOTOS:
            raise EngineError(
                f"Fast3R needs at least {MIN_PHOTOS} photos of the scene, got {len(photos)}"
            )
        if len(photos) > MAX_PHOTOS:
            raise EngineError(
                f"Fast3R takes at most {MAX_PHOTOS} photos in one reconstruction, got "
                f"{len(photos)}; pick fewer or split the set"
            )
        timings: dict[str, float] = {}
        started = time.perf_counter()

        clock = time.perf_counter()
        inputs, kept_photos, dropped = self._load(photos, observer)
        timings["load"] = time.perf_counter() - clock

        self._plan([(int(x.image.shape[-2]), int(x.image.shape[-1])) for x in inputs])

        clock = time.perf_counter()
        observer.progress("inference", _STAGE_START["inference"], f"Fast3R on {len(inputs)} photos")
        maps = self._infer([x.image for x in inputs], observer)
        timings["inference"] = time.perf_counter() - clock

        clock = time.perf_counter()
        poses, pose_drops = self._poses(maps, inputs, observer, refine)
        timings["poses"] = time.perf_counter() - clock
        refined: dict[int, RefinedCamera] = {}
        refine_report = None
        if refine and len(poses) >= MIN_PHOTOS:
            clock = time.perf_counter()
            refined, refine_report = self._refine(maps, inputs, poses, observer)
            timings["refine"] = time.perf_counter() - clock
            for step, seconds in refine_report.timings_s.items():
                timings[f"refine_{step}"] = seconds

        if not poses:
            reasons = "; ".join(
                f"{kept_photos[i].name}: {pose_drops[i]}" for i in sorted(pose_drops)
            )
            raise EngineError(f"Fast3R could not place any of the photos ({reasons})")
        views: list[View] = []
        clock = time.perf_counter()
        observer.progress("points", _STAGE_START["points"], "Gathering the point cloud")
        placed = [i for i in range(len(inputs)) if i not in pose_drops]
        for count, i in enumerate(placed):
            view = self._view(kept_photos[i], inputs[i], maps[i], poses[i], refined.get(i))
            views.append(view)
            observer.points(
                PointCloud(
                    view.points,
                    view.colors,
                    view.confidence,
                    np.full(len(view.points), len(views) - 1, np.int32),
                )
            )
            observer.progress(
                "points",
                _stage_fraction("points", (count + 1) / len(placed)),
                f"Points of {count + 1} of {len(placed)} photos",
            )
        timings["points"] = time.perf_counter() - clock
        for i in sorted(pose_drops):
            dropped.append(DroppedPhoto(kept_photos[i].name, pose_drops[i]))
        timings["total"] = time.perf_counter() - started
        reconstruction = Reconstruction(
            engine=self.name,
            views=views,
            dropped=dropped,
            timings_s=timings,
            quality=self._quality(
                [kept_photos[i].name for i in placed], len(inputs), placed, refine_report
            ),
        )
        observer.progress("done", 1.0, f"{len(views)} cameras, {reconstruction.num_points} points")
        return reconstruction

    def plan_memory(
        self, shapes: Sequence[tuple[int, int]], *, freed_bytes: int = 0
    ) -> MemoryPlan | None:
        """The memory plan of a job whose model inputs are ``shapes`` (H, W each) on this
        engine's device, with the model loaded; None for a model that is not our Fast3R.
        ``freed_bytes``: memory in use now that will be free when the job runs (the job
        running before it)."""
        from aetherscan.models import Fast3R

        if not isinstance(self.model, Fast3R):
            return None
        return plan_memory(
            self.model.config,
            shapes,
            self.dtype_name,
            str(self.device),
            weights_loaded=True,
            freed_bytes=freed_bytes,
        )

    def _plan(self, shapes: list[tuple[int, int]]) -> None:
        """Refuse a job that cannot fit, and set the heads' chunk from its plan."""
        from aetherscan.models import Fast3R

        plan = self.plan_memory(shapes)
        if plan is None or not isinstance(self.model, Fast3R):
            return
        if not plan.fits:
            raise EngineError(plan.sentence())
        self.model.head_chunk_views = plan.head_chunk_views
        log.info("%s", plan.sentence())

    def plan_photos(
        self, photo_sizes: Sequence[tuple[int, int]], *, freed_bytes: int = 0
    ) -> MemoryPlan | None:
        """``plan_memory`` for photos of these (width, height), upright, before reading them."""
        shapes = input_shapes(photo_sizes, self.image_size)
        return self.plan_memory(shapes, freed_bytes=freed_bytes)

    def _quality(
        self, names: list[str], given: int, placed: list[int], refined: RefineReport | None
    ) -> Quality:
        """Fast3R's poses come from its own point maps, so the check is how well each camera
        explains its map (the PnP inlier share) and how many photos it could place; with
        refinement, also whether the refined cameras explain the matched features."""
        reasons = []
        notes = []
        if refined is not None and refined.failure:
            reasons.append(refined.sentence())
        elif refined is not None:
            notes.append(refined.sentence())
            if refined.error_after_px > MAX_REFINED_ERROR_PX:
                reasons.append(
                    f"after refinement the cameras still miss the matched features by "
                    f"{refined.error_after_px:.1f} px (median)"
                )
        weak = [
            name
            for name, i in zip(names, placed, strict=True)
            if self._pnp_inlier_share.get(i, 0.0) < MIN_PNP_INLIER_SHARE
        ]
        if weak:
            reasons.append(
                f"the camera of {len(weak)} photo(s) ({', '.join(weak[:3])}) explains less than "
                f"{100 * MIN_PNP_INLIER_SHARE:.0f} % of its own point map: the map is "
                "inconsistent there"
            )
        if len(placed) < given / 2:
            reasons.append(f"only {len(placed)} of {given} photos could be placed")
        if self.int8:
            reasons.append(
                "int8 inference has not been checked against the real weights yet: compare with "
                "fp32 before relying on it"
            )
        return Quality("uncertain" if reasons else "good", reasons + notes)

    # -- stages

    def _load(
        self, photos: Sequence[Photo], observer: Observer
    ) -> tuple[list[ModelInput], list[Photo], list[DroppedPhoto]]:
        inputs: list[ModelInput] = []
        kept: list[Photo] = []
        dropped: list[DroppedPhoto] = []
        for i, photo in enumerate(photos):
            observer.progress(
                "load",
                _stage_fraction("load", i / len(photos)),
                f"Reading photo {i + 1} of {len(photos)}",
            )
            try:
                inputs.append(preprocess(open_photo(photo.path), self.image_size))
            except (PhotoError, ValueError, OSError) as exc:
                log.warning("dropping %s: %s", photo.name, exc)
                dropped.append(DroppedPhoto(photo.name, f"cannot be used as a photo: {exc}"))
                continue
            kept.append(photo)
        if len(inputs) < MIN_PHOTOS:
            reasons = "; ".join(f"{d.name}: {d.reason}" for d in dropped)
            raise EngineError(
                f"only {len(inputs)} of {len(photos)} photos could be read, Fast3R needs at "
                f"least {MIN_PHOTOS} ({reasons})"
            )
        return inputs, kept, dropped

    def _infer(self, images: list[torch.Tensor], observer: Observer) -> list[_ViewMaps]:
        images = [image.to(self.device) for image in images]
        with (
            torch.inference_mode(),
            _autocast(self.device, self.dtype),
            _seeded(self.seed),
            _ForwardProgress(self.model, images, observer),
        ):
            preds = self.model(images)
        if len(preds) != len(images):
            raise EngineError(f"the model returned {len(preds)} views for {len(images)} photos")
        maps = []
        for image, pred in zip(images, preds, strict=True):
            height, width = image.shape[-2:]
            maps.append(
                _ViewMaps(
                    global_pts=_to_numpy(pred, "pts3d_in_other_view", (1, height, width, 3)),
                    global_conf=_to_numpy(pred, "conf", (1, height, width)),
                    local_pts=_to_numpy(pred, "pts3d_local", (1, height, width, 3)),
                    local_conf=_to_numpy(pred, "conf_local", (1, height, width)),
                )
            )
        return maps

    def _poses(
        self, maps: list[_ViewMaps], inputs: list[ModelInput], observer: Observer, refine: bool
    ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, str]]:
        """(model K, cam_from_world) per placed view, and the reason for each view not placed."""
        observer.progress("poses", _STAGE_START["poses"], "Estimating the cameras")
        focal = estimate_focal(maps[0].global_pts, maps[0].global_conf)
        log.info("shared focal length: %.1f model pixels", focal)
        drops: dict[int, str] = {}
        candidates = []
        for i, view in enumerate(maps):
            best = float(np.nanmax(view.global_conf))
            if not best >= self.min_view_confidence:
                drops[i] = (
                    f"Fast3R could not place this photo (confidence at most {best:.2f}, "
                    f"below {self.min_view_confidence:g}); does it overlap the others?"
                )
            else:
                candidates.append(i)

        def pose(i: int) -> tuple[np.ndarray, np.ndarray, float] | None:
            """(K, cam_from_world, share of the view's pixels that PnP kept), or None."""
            height, width = maps[i].global_conf.shape
            K = intrinsics_matrix(focal, width / 2, height / 2)
            v, u = np.mgrid[0:height, 0:width]
            pixels = np.stack([u, v], axis=-1).astype(np.float64)  # (H, W, 2), OpenCV grid
            mask = maps[i].global_conf > 1.0  # as the original: practically every pixel
            result = solve_pnp(
                maps[i].global_pts[mask],
                pixels[mask],
                K,
                iterations=PNP_ITERATIONS,
                reprojection_px=PNP_REPROJECTION_PX,
            )
            if result is None:
                return None
            return K, result.cam_from_world, result.num_inliers / max(1, int(mask.sum()))

        poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pnp_inlier_share: dict[int, float] = {}
        workers = max(1, min(8, os.cpu_count() or 1, len(candidates)))
        with ThreadPoolExecutor(workers) as pool:  # OpenCV releases the GIL
            try:
                for done, (i, result) in enumerate(
                    zip(candidates, pool.map(pose, candidates), strict=True)
                ):
                    if result is None:
                        drops[i] = "its camera pose could not be estimated (PnP failed)"
                    else:
                        K, cam_from_world, inlier_share = result
                        poses[i] = (K, cam_from_world)
                        self._pnp_inlier_share[i] = inlier_share
                    share = PNP_SHARE_WHEN_REFINING if refine else 1.0
                    observer.progress(
                        "poses",
                        _stage_fraction("poses", share * (done + 1) / len(candidates)),
                        f"Camera {done + 1} of {len(candidates)}",
                    )
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        return poses, drops

    def _refine(
        self,
        maps: list[_ViewMaps],
        inputs: list[ModelInput],
        poses: dict[int, tuple[np.ndarray, np.ndarray]],
        observer: Observer,
    ) -> tuple[dict[int, RefinedCamera], RefineReport]:
        placed = sorted(poses)
        views = [
            RefineView(
                image=inputs[i].rgb,
                global_pts=maps[i].global_pts,
                global_conf=maps[i].global_conf,
                K=poses[i][0],
                cam_from_world=poses[i][1],
            )
            for i in placed
        ]

        def progress(fraction: float, message: str) -> None:
            within = PNP_SHARE_WHEN_REFINING + (1 - PNP_SHARE_WHEN_REFINING) * fraction
            observer.progress("poses", _stage_fraction("poses", within), message)

        result = refine_poses(views, progress)
        log.info("%s", result.report.sentence())
        refined = {
            i: camera
            for i, camera in zip(placed, result.cameras, strict=True)
            if camera is not None
        }
        return refined, result.report

    def _view(
        self,
        photo: Photo,
        model_input: ModelInput,
        maps: _ViewMaps,
        pose: tuple[np.ndarray, np.ndarray],
        refined: RefinedCamera | None = None,
    ) -> View:
        K_model_opencv, cam_from_world = pose
        aligned, _ = align_local_to_global(
            maps.local_pts, maps.global_pts, maps.global_conf, top_fraction=ALIGN_TOP_FRACTION
        )
        depth = transform_points(cam_from_world, aligned)[..., 2].astype(np.float32)  # (H, W)
        valid = np.isfinite(aligned).all(axis=-1) & np.isfinite(depth) & (depth > 0)
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        if refined is not None:
            depth *= _depth_scale(depth, refined)
            K_model_opencv, cam_from_world = refined.K, refined.cam_from_world
            aligned = _lift(depth, K_model_opencv, cam_from_world)
            aligned[~valid] = np.nan
        geometry = model_input.geometry
        depth_K = opencv_K_to_colmap_K(K_model_opencv)
        K = crop_K_to_photo_K(depth_K, geometry.scale, geometry.crop_offset)

        points = aligned.reshape(-1, 3)
        colors = model_input.rgb.reshape(-1, 3)
        confidence = maps.local_conf.reshape(-1).astype(np.float32)
        keep = np.isfinite(points).all(axis=1) & (confidence >= self.min_confidence)
        index = np.flatnonzero(keep)
        order = np.argsort(-confidence[index], kind="stable")
        if self.max_points_per_view != "all":
            order = order[: self.max_points_per_view]
        index = index[order]
        width, height = geometry.photo_size
        return View(
            name=photo.name,
            width=width,
            height=height,
            K=K,
            cam_from_world=cam_from_world,
            points=points[index].astype(np.float32),
            colors=colors[index].astype(np.uint8),
            confidence=confidence[index],
            depth=depth,
            depth_confidence=maps.local_conf.astype(np.float32),
            depth_K=depth_K,
        )


class _ForwardProgress:
    """Progress inside the forward pass, from hooks on the network's blocks, so that a long pass
    (minutes on a CPU) moves the bar and can be cancelled between blocks (the observer's
    ``Cancelled`` ends the pass).

    Each encoder block, fusion block and head chunk adds its share of an estimate of the pass's
    arithmetic: per token a transformer block costs 12 C^2 in its linears plus 2 T C in attention
    over T tokens, and a view's two heads cost about 0.45 of its encoder (measured on the CPU,
    docs/benchmarks.md). A model that is not our ``Fast3R`` gets no hooks.
    """

    HEADS_PER_ENCODER = 0.45
    MIN_STEP = 0.01  # of the pass, between two reports

    def __init__(self, model: torch.nn.Module, images: list[torch.Tensor], observer: Observer):
        from aetherscan.models import Fast3R

        self.observer = observer
        self.handles: list[Any] = []
        self.done = self.reported = 0.0
        self.stage = ""
        self.views = len(images)
        self.total = 0.0
        if not isinstance(model, Fast3R):
            return
        enc, dec = model.config.encoder, model.config.decoder
        batch, patch = images[0].shape[0], enc.patch_size
        tokens = [(img.shape[2] // patch) * (img.shape[3] // patch) for img in images]  # a view
        self.enc_dim, self.enc_depth = enc.embed_dim, enc.depth
        self.dec_done, self.dec_depth = 0, dec.depth
        self.fusion_block = batch * self._block_cost(sum(tokens), dec.embed_dim)
        heads = model._heads()
        self.head_share = self.HEADS_PER_ENCODER / len(heads)
        encoder_total = batch * sum(enc.depth * self._block_cost(n, enc.embed_dim) for n in tokens)
        self.total = (1 + self.HEADS_PER_ENCODER) * encoder_total + dec.depth * self.fusion_block
        for block in model.encoder.enc_blocks:
            self.handles.append(block.register_forward_hook(self._encoder_block))
        for block in model.decoder.dec_blocks:
            self.handles.append(block.register_forward_hook(self._fusion_block))
        for head in heads.values():
            self.handles.append(head.dpt.register_forward_hook(self._head_chunk))

    @staticmethod
    def _block_cost(tokens: int, dim: int) -> float:
        return tokens * (12.0 * dim * dim + 2.0 * tokens * dim)

    def _encoder_block(self, _module, args, _output) -> None:
        x = args[0]  # (b, N, C) tokens of b images
        self._advance("encoder", x.shape[0] * self._block_cost(x.shape[1], self.enc_dim))

    def _fusion_block(self, _module, _args, _output) -> None:
        self.dec_done += 1
        self._advance("fusion", self.fusion_block)

    def _head_chunk(self, _module, args, _output) -> None:
        layers, (h, w) = args  # 4 x (b, N, C_i), the token grid
        per_image = self.enc_depth * self._block_cost(h * w, self.enc_dim)
        self._advance("heads", layers[0].shape[0] * self.head_share * per_image)

    def _advance(self, stage: str, cost: float) -> None:
        self.done = min(self.done + cost, self.total)
        fraction = self.done / self.total
        last = fraction > 1.0 - 1e-9  # the pass's end is always reported
        if stage == self.stage and fraction - self.reported < self.MIN_STEP and not last:
            return
        self.stage, self.reported = stage, fraction
        message = {
            "encoder": f"Fast3R: encoding {self.views} photos",
            "fusion": f"Fast3R: all photos attending to each other, block {self.dec_done} of "
            f"{self.dec_depth}",
            "heads": f"Fast3R: pointmaps of {self.views} photos",
        }[stage]
        self.observer.progress("inference", _stage_fraction("inference", fraction), message)

    def __enter__(self) -> _ForwardProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self.handles:
            handle.remove()


def _depth_scale(depth: np.ndarray, refined: RefinedCamera) -> float:
    """The factor that brings a depth map (H, W) to the depths of the refined tracks it sees
    (the median ratio), or 1 when it sees too few of them."""
    mapped = at_pixels(depth, refined.track_pixels)
    ok = (mapped > 0) & (refined.track_depths > 0)
    if ok.sum() < MIN_DEPTH_SCALE_SAMPLES:
        return 1.0
    return float(np.median(refined.track_depths[ok] / mapped[ok]))


def _lift(depth: np.ndarray, K: np.ndarray, cam_from_world: np.ndarray) -> np.ndarray:
    """World points (H, W, 3) of a depth map through the camera (K OpenCV, model pixels)."""
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width]
    cam = np.stack(
        [(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1
    )
    world_from_cam = np.linalg.inv(cam_from_world)
    return transform_points(world_from_cam, cam).astype(np.float32)


def _load_model(weights: str | Path, device: torch.device) -> torch.nn.Module:
    from aetherscan.models import Fast3R

    try:
        model = Fast3R.from_pretrained(weights, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise EngineError(f"cannot load the Fast3R weights {str(weights)!r}: {exc}") from exc
    return model.eval()


def _to_numpy(pred: dict[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Batch item 0 of one model output as float32 on the CPU, after checking its shape."""
    value = pred[key]
    if tuple(value.shape) != shape:
        raise EngineError(f"model output {key!r} has shape {tuple(value.shape)}, expected {shape}")
    return value[0].float().cpu().numpy()


def _stage_fraction(stage: str, within: float) -> float:
    stages = list(_STAGE_START)
    start = _STAGE_START[stage]
    end = _STAGE_START[stages[stages.index(stage) + 1]]
    return start + (end - start) * min(max(within, 0.0), 1.0)


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed the global torch RNG (the model draws its image indices there), restoring it after."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
