"""The Python API and the ``aetherscan reconstruct`` command: photo files in, a Reconstruction out.

>>> from aetherscan.pipeline import reconstruct
>>> scene = reconstruct(["photos/"], engine="fast3r", image_size=512)  # doctest: +SKIP
>>> scene.point_cloud().xyz.shape  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aetherscan.engines import create_engine
from aetherscan.engines.base import Engine, EngineError, Observer, Photo
from aetherscan.export import export, export_file, export_mesh_file
from aetherscan.export.mesh_files import MESH_FORMATS
from aetherscan.masks import MaskError, check_mask, find_masks
from aetherscan.photos import PhotoError, read_size
from aetherscan.reconstruction import Quality, Reconstruction
from aetherscan.settings import Settings
from aetherscan.video import VideoError, sample_video, sniff_video

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".bmp"}
)


def find_photos(paths: Iterable[str | Path]) -> list[Path]:
    """Photo files from files and folders, in order; a folder gives its photos sorted by name
    (not recursing, skipping hidden files). Raises FileNotFoundError for a missing path."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file()
                    and p.suffix.lower() in PHOTO_SUFFIXES
                    and not p.name.startswith(".")
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such photo or folder: {path}")
    return found


def is_video_file(path: Path) -> bool:
    """Whether ``path`` is a video (MP4, MOV, WebM), by its first bytes."""
    try:
        with open(path, "rb") as file:
            return sniff_video(file.read(16)) is not None
    except OSError:
        return False


def video_frames(path: Path, max_frames: int = 60) -> list[Path]:
    """The frames chosen from a video (``aetherscan.video``), as JPEG files in a folder of this
    process's own, removed when it exits; what the choice had to say is logged. VideoError
    when the video cannot be used."""
    sampled = sample_video(path, max_frames=max_frames)
    folder = Path(tempfile.mkdtemp(prefix="aetherscan-frames-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    frames = []
    for frame in sampled.frames:
        target = folder / frame.name
        target.write_bytes(frame.jpeg)
        frames.append(target)
    for note in sampled.notes:
        log.warning("%s", note)
    log.info(
        "%s: %d frames chosen from %.1f s of video", path.name, len(frames), sampled.duration_s
    )
    return frames


def photos_from_paths(paths: Iterable[str | Path], masks: str | Path | None = None) -> list[Photo]:
    """Photo objects named by file name (by path where two files share a name), each with its
    mask from the folder ``masks`` where it has one (``aetherscan.masks.NAMING``); a video gives
    the frames chosen from it (``video_frames``). Raises MaskError for a mask that does not fit
    its photo, VideoError for a video that cannot be used."""
    files: list[Path] = []
    for path in find_photos(paths):
        files.extend(video_frames(path) if is_video_file(path) else [path])
    counts = Counter(p.name for p in files)
    found = find_masks(files, Path(masks)) if masks is not None else {}
    photos = [
        Photo(name=p.name if counts[p.name] == 1 else str(p), path=p, mask_path=found.get(p))
        for p in files
    ]
    for photo in photos:
        if photo.mask_path is not None:
            _check_mask(photo)
    return photos


def _check_mask(photo: Photo) -> None:
    assert photo.mask_path is not None
    try:
        size = read_size(photo.path)
    except PhotoError:
        return  # the engine refuses the photo itself, with its reason
    check_mask(photo.mask_path, photo.name, size, what=f"its mask {photo.mask_path}")


def reconstruct(
    photos: Iterable[str | Path],
    engine: str | Engine = "auto",
    *,
    masks: str | Path | None = None,
    observer: Observer | None = None,
    **options: Any,
) -> Reconstruction:
    """Reconstruct a scene from photo files and folders.

    ``engine`` is ``"auto"``, ``"fast3r"``, ``"colmap"`` or an engine already built (to load the
    model once for several calls); ``options`` go to ``aetherscan.engines.create_engine``
    (weights, device, dtype, image_size, min_confidence, max_points_per_view, ...).
    ``masks``: a folder of masks, the mask of ``x.jpg`` named ``x.png``, ``x.jpg.png`` or ``x``
    with another image suffix (black: ignore, anything else: the subject); a photo without
    one has no mask. A mask that does not fit its photo raises ``aetherscan.masks.MaskError``.
    The result's ``quality`` says whether the engine trusts it, and its ``photo_paths`` name
    each photo's file, so that ``export_file(result, "scene.zip")`` includes the photos.
    """
    if not isinstance(engine, str) and options:
        raise TypeError(f"options {sorted(options)} only apply when the engine is built by name")
    found = photos_from_paths(photos, masks)  # a bad mask is refused before a model loads
    if isinstance(engine, str):
        engine = create_engine(engine, **options)
    result = engine.reconstruct(found, observer)
    if not result.photo_paths:
        result.photo_paths = {photo.name: photo.path for photo in found}
    return result


def _memory_refusal(settings: Settings, photos: list[Photo]) -> str | None:
    """Why a Fast3R job of these photos cannot fit the device, found before the weights load;
    None when it fits, or when another engine runs it."""
    from aetherscan.plan import plan_before_loading

    sizes = []
    for photo in photos:
        try:
            sizes.append(read_size(photo.path))
        except PhotoError:
            continue  # the engine leaves it out, with its reason
    plan = plan_before_loading(settings, sizes) if len(sizes) >= 2 else None
    return plan.sentence() if plan is not None and not plan.fits else None


def reconstruct_command(
    settings: Settings,
    photos: list[Path],
    output: Path,
    cameras: Path | None,
    masks: Path | None = None,
    mesh: Path | None = None,
) -> int:
    """``aetherscan reconstruct``: progress on stderr, the result in ``output`` (and cameras,
    and the mesh), and at the end the engine's verdict on it."""
    if mesh is not None and mesh.suffix.lower() not in MESH_FORMATS.values():
        print(
            f"aetherscan: a mesh is written as .ply, .glb or .obj, not {mesh.name}", file=sys.stderr
        )
        return 2
    try:
        found = photos_from_paths(photos, masks)
    except (FileNotFoundError, MaskError, VideoError) as exc:
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("aetherscan: no photos found in " + ", ".join(map(str, photos)), file=sys.stderr)
        return 2
    refusal = _memory_refusal(settings, found)
    if refusal is not None:
        print(f"aetherscan: {refusal}", file=sys.stderr)
        return 1
    bar = _ProgressBar() if sys.stderr.isatty() else _ProgressLog()
    try:
        engine = create_engine(settings.engine, **settings.engine_options())
        result = engine.reconstruct(found, bar)
    except EngineError as exc:
        bar.close()
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 1
    bar.close()
    paths = {photo.name: photo.path for photo in found}
    try:
        written = [
            export_file(result, output, paths, keep_photo_location=settings.keep_photo_location)
        ]
        if cameras is not None:
            written.append(export(result, "cameras", cameras))
        if mesh is not None:
            written.append(export_mesh_file(result, mesh))
    except ValueError as exc:
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 2
    for dropped in result.dropped:
        print(f"left out {dropped.name}: {dropped.reason}", file=sys.stderr)
    given = sum(photo.mask_path is not None for photo in found)
    print(
        f"{len(result.views)} cameras, {result.num_points} points "
        f"({result.engine}, {result.timings_s.get('total', 0.0):.1f} s"
        + (f", masks: {result.masks}" if given or result.masks != "none" else "")
        + ") -> "
        + ", ".join(map(str, written)),
        file=sys.stderr,
    )
    print(verdict_lines(result.quality), file=sys.stderr)
    return 0


def verdict_lines(quality: Quality) -> str:
    """The engine's verdict for people: a line, then one line per reason (or note)."""
    reasons = [f"  - {reason}" for reason in quality.reasons]
    if quality.verdict == "good":
        head = "quality: good (the engine's checks passed)" + ("; notes:" if reasons else "")
    else:
        head = "quality: UNCERTAIN, the result may be wrong" + (
            ":" if reasons else " (the engine gave no reason)"
        )
    return "\n".join([head, *reasons])


class _ProgressBar(Observer):
    """A tqdm bar on stderr showing the stage, the job's fraction and the engine's message."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=1000,
            file=sys.stderr,
            bar_format="{desc:>9}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self._bar.set_description_str(stage, refresh=False)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.n = round(min(max(fraction, 0.0), 1.0) * 1000)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class _ProgressLog(Observer):
    """Progress as plain lines, for a stderr that is a file or a pipe (logs, CI): a line when
    the stage changes, and within a stage at most one every ``interval_s`` seconds."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self._interval_s = interval_s
        self._stage = ""
        self._last_line_s = 0.0

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last_line_s < self._interval_s:
            return
        self._stage, self._last_line_s = stage, now
        percent = round(min(max(fraction, 0.0), 1.0) * 100)
        print(f"{stage:>9} {percent:3d}%  {message}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass
