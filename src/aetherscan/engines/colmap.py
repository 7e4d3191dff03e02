"""The COLMAP engine: a classical reconstruction on any CPU, no model weights needed.

pycolmap does the sparse part (SIFT, matching, incremental and global SfM, the check of each
model against the verified pairs that picks one and gives the verdict) in a child process
(``aetherscan.engines.colmap_sfm``, its steps in ``aetherscan.engines.sfm``), because some of its
failures abort the process instead of raising: a crash there costs this one job and becomes an
``EngineError``. The dense part runs here, through ``aetherscan.engines.densify`` (OpenCV stereo
on the CPU), kept off the pixels that the photos' masks mark as background.

Output conventions (see ``aetherscan.reconstruction``): ``K`` at the original photo resolution,
``cam_from_world`` in OpenCV axes, in COLMAP's world frame and arbitrary scale. COLMAP estimates
one radial distortion coefficient per camera; the views carry the pinhole part, and the images
given to dense stereo are undistorted to it first.

Point confidence (always >= 2 here, so it passes the default min_confidence of 1): its whole part
is the number of photos that see the point consistently, its fraction (below 1) how well they
agree. For the dense cloud that is what densify reports (views whose depth maps agree, the owning
view included; a half more when no view checked sees through the point); for the sparse cloud
the SfM track length (photos whose features triangulate to the point; the fraction from its
reprojection error, 1 at 0 px, 0 at ``MAX_REPROJECTION_PX``). A viewer can rank points by it (a percentile) and say
"seen by at least K photos" from its whole part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

import aetherscan
from aetherscan.engines.base import EngineError, Observer, Photo, Preview, PreviewCamera
from aetherscan.engines.sfm.mapping import MAPPERS
from aetherscan.engines.sfm.preview import PREVIEW_POINTS
from aetherscan.geometry.camera import colmap_K_to_opencv_K
from aetherscan.photos import open_photo_array
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View

log = logging.getLogger(__name__)

# The worker's environment names its parent, so that it ends when the parent dies.
PARENT_PID_VARIABLE = "AETHERSCAN_WORKER_PARENT_PID"
DENSIFY_END = 0.97  # share of the job done when dense stereo ends (the child ends at 0.85)
SFM_END = 0.85
MAX_REPROJECTION_PX = 4.0  # COLMAP's own filter: no sparse point has a larger mean error
LOG_TAIL_LINES = 3


class ColmapEngine:
    """Photos in, cameras and a coloured point cloud out, with pycolmap and CPU dense stereo.

    ``max_image_px``: SfM and stereo work on copies with this long side (poses gain nothing from
    more; time grows with the pixels). ``matching``: ``exhaustive`` matches every pair,
    ``pruned`` each photo with its neighbours in input order and its most similar photos, and
    ``auto`` picks exhaustive up to 30 photos (see colmap_sfm.py). ``densify=False`` keeps the
    sparse SfM points. ``mappers``: the SfM methods to run; with both, the model that agrees
    best with the verified photo pairs is kept (see ``aetherscan.engines.sfm.quality``).
    ``still_background``: drop the matches that do not move between two photos (the background
    behind a turntable) ``always``, ``never``, or ``auto`` when most pairs show such matches.
    Masks (``Photo.mask_path`` or a photo's alpha) keep features and dense points on the
    subject. ``previews``: send the observer provisional cameras and sparse points while the
    sparse part runs (``aetherscan.engines.sfm.preview``); the result is the same without.
    """

    name = "colmap"

    def __init__(
        self,
        max_image_px: int = 1024,
        *,
        num_threads: int = -1,
        max_megapixels: float = 100.0,
        densify: bool = True,
        matching: Literal["auto", "exhaustive", "pruned"] = "auto",
        mappers: Sequence[str] = MAPPERS,
        still_background: Literal["auto", "always", "never"] = "auto",
        previews: bool = True,
        _abort_at: str | None = None,  # test hook: the child aborts at the start of this stage
    ) -> None:
        if max_image_px < 64:
            raise ValueError(f"max_image_px must be at least 64, got {max_image_px}")
        self.max_image_px = max_image_px
        self.num_threads = num_threads
        self.max_megapixels = max_megapixels
        self.densify = densify
        if matching not in ("auto", "exhaustive", "pruned"):
            raise ValueError(f"matching must be auto, exhaustive or pruned, got {matching!r}")
        self.matching = matching
        unknown = set(mappers) - set(MAPPERS)
        if unknown or not mappers:
            raise ValueError(f"mappers must be some of {MAPPERS}, got {list(mappers)}")
        self.mappers = tuple(mappers)
        if still_background not in ("auto", "always", "never"):
            raise ValueError(
                f"still_background must be auto, always or never, got {still_background!r}"
            )
        self.still_background = still_background
        self.previews = previews
        self._abort_at = _abort_at

    def reconstruct(
        self,
        photos: Sequence[Photo],
        observer: Observer | None = None,
        *,
        refine_poses: bool | None = None,
    ) -> Reconstruction:
        """``refine_poses`` is taken and changes nothing: COLMAP's cameras are always refined by
        bundle adjustment."""
        observer = observer or Observer()
        if len(photos) < 2:
            raise EngineError(f"COLMAP needs at least 2 photos, got {len(photos)}")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="aetherscan-colmap-") as tmp:
            work = Path(tmp)
            sparse = self._run_sfm(photos, work, observer)
            header = sparse["header"]
            views = self._views(header, sparse)
            timings = dict(header["timings_s"])
            # CPU seconds of the SfM worker per stage: on a busy machine, steadier than wall time.
            timings |= {f"{k}_cpu": v for k, v in header["stats"].get("cpu_s", {}).items()}
            log.info("COLMAP: %s", header["stats"])
            if self.densify and self.previews:  # final poses; dense points take a while yet
                observer.preview(_sparse_preview(views, sparse))
            dense_start, dense_cpu = time.perf_counter(), time.process_time()
            with _opencv_threads(self.num_threads):
                densified = self.densify and self._densify(views, header, work, sparse, observer)
            if densified:
                timings["densify"] = round(time.perf_counter() - dense_start, 3)
                timings["densify_cpu"] = round(time.process_time() - dense_cpu, 3)
            else:
                self._sparse_points(views, sparse, observer)
        timings["total"] = round(time.perf_counter() - start, 3)
        observer.progress("done", 1.0, f"{len(views)} photos placed")
        return Reconstruction(
            engine=self.name,
            views=views,
            dropped=[DroppedPhoto(d["name"], d["reason"]) for d in header["dropped"]],
            timings_s=timings,
            quality=Quality.from_json(header["quality"]),
            masks=header["masks"],
        )

    # -- the child process -----------------------------------------------------------------
    def _run_sfm(self, photos: Sequence[Photo], work: Path, observer: Observer) -> dict:
        spec = {
            "photos": [
                {
                    "name": p.name,
                    "path": str(Path(p.path).resolve()),
                    "mask": str(Path(p.mask_path).resolve()) if p.mask_path else None,
                }
                for p in photos
            ],
            "work_dir": str(work),
            "max_image_px": self.max_image_px,
            "max_megapixels": self.max_megapixels,
            "num_threads": self.num_threads,
            "matching": self.matching,
            "mappers": list(self.mappers),
            "still_background": self.still_background,
            "previews": self.previews,
            "abort_at": self._abort_at,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        package_root = str(Path(aetherscan.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        # glog would also write three log files per run into the system's temp folder, left
        # there for ever; to stderr, its lines land in colmap.log, removed with the work folder.
        env["GLOG_logtostderr"] = "1"
        env[PARENT_PID_VARIABLE] = str(os.getpid())  # the worker ends when this process dies
        log_path = work / "colmap.log"
        stage = "load"
        outcome: dict | None = None
        with open(log_path, "wb") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "aetherscan.engines.colmap_sfm", str(spec_path)],
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            assert child.stdout is not None
            try:
                for line in child.stdout:
                    message = json.loads(line)
                    if message["type"] == "progress":
                        stage = message["stage"]
                        observer.progress(stage, message["fraction"], message["message"])
                    elif message["type"] == "preview":
                        observer.preview(_preview_from_json(message))
                    else:
                        outcome = message
                child.wait()
            except BaseException:  # Cancelled, KeyboardInterrupt, a broken observer: stop it
                child.kill()
                child.wait()
                raise
            finally:
                child.stdout.close()
        if outcome is None:
            raise EngineError(self._crash_message(child.returncode, stage, log_path))
        if outcome["type"] == "error":
            raise EngineError(outcome["message"])
        with np.load(outcome["path"]) as data:
            result = {key: data[key] for key in data.files}
        result["header"] = json.loads(result["header"].tobytes())
        return result

    @staticmethod
    def _crash_message(returncode: int, stage: str, log_path: Path) -> str:
        if returncode < 0:
            try:
                how = f"was killed by {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with code {returncode}"
        lines = log_path.read_text(errors="replace").splitlines()
        # glog marks fatal and error lines with F/E and a date; those say what went wrong.
        telling = [ln for ln in lines if ln[:1] in ("F", "E") and ln[1:2].isdigit()]
        # Otherwise the last lines that are not stack frames ("    @ 0x...").
        plain = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("@")]
        tail = (telling or plain)[-LOG_TAIL_LINES:]
        detail = (" Last log lines: " + " | ".join(tail)) if tail else ""
        return (
            f"COLMAP stopped unexpectedly during the {stage} stage (the worker process {how}); "
            f"this job is lost, nothing else is affected.{detail}"
        )

    # -- views and points ------------------------------------------------------------------
    @staticmethod
    def _views(header: dict, sparse: dict) -> list[View]:
        views = []
        for k, meta in enumerate(header["views"]):
            K_scaled = sparse[f"{k}/K"]
            to_original = np.diag([meta["scale"], meta["scale"], 1.0])
            views.append(
                View(
                    name=meta["name"],
                    width=meta["width"],
                    height=meta["height"],
                    K=to_original @ K_scaled,
                    cam_from_world=sparse[f"{k}/cam_from_world"],
                    points=np.zeros((0, 3), np.float32),
                    colors=np.zeros((0, 3), np.uint8),
                    confidence=np.zeros((0,), np.float32),
                    radial_k1=meta["radial_k1"],  # of normalised coordinates: scale-free
                )
            )
        return views

    @staticmethod
    def _sparse_points(views: list[View], sparse: dict, observer: Observer) -> None:
        """The cloud when there is no dense stereo: SfM track points, owned by their nearest view."""
        owner = sparse["points/view"]
        closeness = 1 - np.clip(sparse["points/error_px"] / MAX_REPROJECTION_PX, 0, 1)
        confidence = (sparse["points/track_length"] + 0.999 * closeness).astype(np.float32)
        for k, view in enumerate(views):
            mine = owner == k
            view.points = sparse["points/xyz"][mine]
            view.colors = sparse["points/rgb"][mine]
            view.confidence = confidence[mine]
            observer.points(
                PointCloud(
                    view.points, view.colors, view.confidence, np.full(mine.sum(), k, np.int32)
                )
            )
            observer.progress(
                "points",
                SFM_END + (1 - SFM_END) * (k + 1) / len(views),
                f"sparse points of {k + 1} of {len(views)} photos",
            )

    def _densify(
        self, views: list[View], header: dict, work: Path, sparse: dict, observer: Observer
    ) -> bool:
        try:
            from aetherscan.engines.densify import densify
        except ImportError:  # no dense stereo in this build: the result is the sparse cloud
            log.warning("aetherscan.engines.densify is not available: keeping the sparse cloud")
            return False
        import cv2

        images, Ks, masks = [], [], []
        for k, meta in enumerate(header["views"]):
            image = open_photo_array(work / "images" / meta["file"])
            mask_file = work / "masks" / f"{meta['file']}.png"  # written by the SfM worker
            mask = None
            if mask_file.exists():
                with Image.open(mask_file) as file:
                    mask = np.asarray(file.convert("L"))
            K = sparse[f"{k}/K"]
            if meta["radial_k1"] != 0.0:
                K_cv = colmap_K_to_opencv_K(K)  # OpenCV: pixel centres on integers
                distortion = np.array([meta["radial_k1"], 0, 0, 0])
                image = cv2.undistort(image, K_cv, distortion)
                if mask is not None:
                    mask = cv2.undistort(mask, K_cv, distortion)
            images.append(image)
            masks.append(None if mask is None else mask >= 128)
            Ks.append(K)
        emitted: dict[int, list[PointCloud]] = {}

        def on_view(index: int, xyz: np.ndarray, rgb: np.ndarray, confidence: np.ndarray) -> None:
            batch = PointCloud(
                np.asarray(xyz, np.float32),
                np.asarray(rgb, np.uint8),
                np.asarray(confidence, np.float32),
                np.full(len(xyz), index, np.int32),
            )
            emitted.setdefault(index, []).append(batch)
            observer.points(batch)

        def progress(fraction: float, message: str) -> None:
            observer.progress("densify", SFM_END + (DENSIFY_END - SFM_END) * fraction, message)

        results = densify(
            images,
            Ks,
            [v.cam_from_world for v in views],
            sparse_xyz=sparse["points/xyz"],
            on_view=on_view,
            progress=progress,
            masks=masks,
        )
        for k, (view, (xyz, rgb, confidence, depth)) in enumerate(zip(views, results, strict=True)):
            if k not in emitted:  # every point reaches the observer exactly once
                on_view(k, xyz, rgb, confidence)
            # The view holds exactly what the observer heard, batch after batch.
            mine = PointCloud.concatenate(emitted[k])
            view.points, view.colors, view.confidence = mine.xyz, mine.rgb, mine.confidence
            if depth is not None:
                h, w = depth.shape
                scale = np.diag([w / images[k].shape[1], h / images[k].shape[0], 1.0])
                view.depth = depth.astype(np.float32)
                view.depth_K = scale @ Ks[k]
            observer.progress(
                "points", DENSIFY_END + (1 - DENSIFY_END) * (k + 1) / len(views), "gathering points"
            )
        if not any(len(view.points) for view in views):
            # No pair could be matched densely (two distant photos, say): the sparse points are
            # still real points, and nothing was streamed yet.
            log.warning("dense stereo found no points: keeping the sparse cloud")
            return False
        return True


def _preview_cloud(xyz: np.ndarray, rgb: np.ndarray) -> PointCloud:
    """A preview's points: no confidence to speak of, and no view of the result owns them."""
    return PointCloud(xyz, rgb, np.ones(len(xyz), np.float32), np.full(len(xyz), -1, np.int32))


def _preview_from_json(message: dict) -> Preview:
    """A preview line of the SfM worker (``aetherscan.engines.sfm.preview``)."""
    xyz = np.asarray(message["points"]["xyz"], np.float32).reshape(-1, 3)
    rgb = np.asarray(message["points"]["rgb"], np.uint8).reshape(-1, 3)
    cameras = [
        PreviewCamera(
            name=c["name"],
            width=c["width"],
            height=c["height"],
            K=np.asarray(c["K"], float),
            cam_from_world=np.asarray(c["cam_from_world"], float),
        )
        for c in message["cameras"]
    ]
    return Preview(cameras, _preview_cloud(xyz, rgb), message["message"])


def _sparse_preview(views: list[View], sparse: dict) -> Preview:
    """The result's cameras and a sample of its sparse points, while dense stereo runs."""
    xyz, rgb = sparse["points/xyz"], sparse["points/rgb"]
    if len(xyz) > PREVIEW_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(xyz), PREVIEW_POINTS, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    cameras = [PreviewCamera(v.name, v.width, v.height, v.K, v.cam_from_world) for v in views]
    return Preview(
        cameras,
        _preview_cloud(xyz, rgb),
        f"{len(views)} photos placed; computing their dense points (sparse points shown)",
    )


__all__ = ["ColmapEngine"]


@contextlib.contextmanager
def _opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's threads (the dense stereo's) held to ``count`` for the block; -1: as they are."""
    if count <= 0:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
