"""The REST API under /api (OpenAPI docs at /docs). Knowing a job's id is the right to read and
delete it: ids are unguessable and no route lists them.

Every error is ``{"detail": "a sentence"}`` that names no server path: a data folder that is
full answers 507, one that refuses writes 503; an upload that fails in any way leaves no job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import Receive, Scope, Send

from aetherscan import __version__
from aetherscan.engines.base import JobOptions, Photo, job_options
from aetherscan.masks import NAMING, MaskError, pair_masks
from aetherscan.mesh import MeshError
from aetherscan.server.download_names import content_disposition, download_name
from aetherscan.server.jobs import Job
from aetherscan.server.protocol import (
    FEATURES,
    DroppedInfo,
    ErrorResponse,
    Health,
    Info,
    JobPhoto,
    JobStatus,
    PhotoInfo,
    QualityInfo,
    ScaleInfo,
    ScaleRequest,
)
from aetherscan.server.results import (
    download_files,
    download_path,
    download_urls,
    drop_other_scales,
    media_type,
    points_path,
    use_scale,
)
from aetherscan.server.scale import ScaleRefused, metres_per_unit
from aetherscan.server.service import Service, ServiceDep, client_of
from aetherscan.server.storage import JobRecord, StorageError, without_paths, writing
from aetherscan.server.thumbnails import thumbnail
from aetherscan.server.uploads import Refused, check_video_size
from aetherscan.video import sniff_video

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["api"])

NOT_FOUND = "there is no job with this id (it may have expired or been deleted)"
UPLOAD_FAILED = "the upload failed on the server (an internal error, logged); no job was made"
STOPPING = (
    "the job is running: it is cancelled, stops at the engine's next step, and its photos and "
    "results are removed then; it is gone from the API now"
)
_errors = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 411, 413, 422, 429, 500, 503, 507)
}


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()


@router.get("/info", response_model=Info)
async def info(service: ServiceDep) -> Info:
    return Info(
        engine=service.engine.name,
        version=__version__,
        features=list(FEATURES),
        limits=service.limits(),
        formats=list(download_files()),
        job_options=job_options(service.engine),
    )


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobStatus,
    responses={code: _errors[code] for code in (400, 411, 413, 422, 429, 500, 503, 507)},
)
async def create_job(
    request: Request,
    service: ServiceDep,
    files: Annotated[list[UploadFile], File(description="two or more photos")],
    masks: Annotated[
        list[UploadFile] | None,
        File(
            description=f"masks of some or all of the photos, each named after its photo: {NAMING}"
        ),
    ] = None,
    refine_poses: Annotated[
        bool | None,
        Form(
            description="a job option (GET /api/info lists the engine's): true to refine "
            "Fast3R's cameras by bundle adjustment; default: the server's setting refine_poses"
        ),
    ] = None,
) -> JobStatus:
    """Upload photos (multipart field ``files``, repeated) and their masks (field ``masks``,
    repeated, each file named after its photo); their reconstruction starts at once. A photo or
    mask that cannot be used refuses the whole request, naming the photo. However the request
    fails, it leaves no job: nothing counts against the client's limit afterwards."""
    jobs = service.jobs
    try:
        job = jobs.open_job(client_of(request), "rest")
    except Refused as exc:
        raise HTTPException(exc.status, exc.message) from None
    except StorageError as exc:
        raise HTTPException(exc.status, f"no job could be made: {exc.message}") from None
    try:
        for upload in files:
            filename = upload.filename or ""
            head = await upload.read(16)
            await upload.seek(0)
            if sniff_video(head):  # a video: its frames are the photos
                await _add_video(service, job, filename, upload)
                continue
            if upload.size is not None:  # refuse a big file before reading it
                jobs.check_photo_size(job, jobs.photo_label(job, filename), upload.size)
            await jobs.add_photo(job, filename, await upload.read())
        await _add_masks(service, job, masks or [])
        jobs.submit(job, JobOptions(refine_poses=refine_poses))
    except (Refused, StorageError) as exc:
        jobs.discard(job, exc.message)
        detail = exc.message if isinstance(exc, Refused) else f"{exc.message}; no job was made"
        raise HTTPException(exc.status, detail) from None
    except Exception:
        log.exception("the upload of job %s failed", job.id)
        jobs.discard(job, UPLOAD_FAILED)
        raise HTTPException(500, UPLOAD_FAILED) from None
    except BaseException:  # the request was cancelled: the client went away
        jobs.discard(job, "the upload was interrupted")
        raise
    return job_status(service, job.id)


async def _add_video(service: Service, job: Job, filename: str, upload: UploadFile) -> None:
    """The video's frames (``JobManager.add_video``), from a copy in the data folder's tmp/."""
    if upload.size is not None:  # refuse a big video before reading it
        check_video_size(filename, upload.size, service.settings.max_video_mb)
    with tempfile.TemporaryDirectory(dir=service.storage.temp_dir) as folder:
        path = Path(folder) / "video"
        with writing("a video"):
            await asyncio.to_thread(_copy_upload, upload, path)
        await service.jobs.add_video(job, filename, path)


def _copy_upload(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)


async def _add_masks(service: Service, job: Job, uploads: list[UploadFile]) -> None:
    """Pair each mask with the photo it is named after, then check and store it."""
    names = [re.split(r"[/\\]", upload.filename or "")[-1] for upload in uploads]
    try:
        pairs, unmatched = pair_masks([photo.label for photo in job.photos], names)
    except MaskError as exc:
        raise Refused(f"masks: {exc}", code="bad_mask") from None
    if unmatched:
        raise Refused(
            f"masks: {unmatched[0]!r} is named after none of the photos ({NAMING})",
            code="bad_mask",
        )
    upload_of = dict(zip(names, uploads, strict=True))
    for photo in job.photos:
        if photo.label in pairs:
            upload = upload_of[pairs[photo.label]]
            if upload.size is not None:  # refuse a big file before reading it
                service.jobs.check_mask_size(job, photo, upload.size)
            await service.jobs.add_mask(job, photo, await upload.read())


@router.get("/jobs/{job_id}", response_model=JobStatus, responses={404: _errors[404]})
async def read_job(job_id: str, service: ServiceDep) -> JobStatus:
    return job_status(service, job_id)


@router.get(
    "/jobs/{job_id}/files/{file_name}",
    response_class=FileResponse,
    responses={code: _errors[code] for code in (404, 409, 500, 503, 507)},
)
async def download(job_id: str, file_name: str, service: ServiceDep) -> Response:
    """A result file: scene.ply, cameras.json, and the exports that GET /api/info lists, saved
    under a name made from the job (``flowerpot-16-photos-2026-12-01.ply``)."""
    record = _finished_job(service, job_id)
    scale = record.metres_per_unit
    result_dir = service.storage.result_dir(job_id)
    photos = [Photo(p.label, p.path) for p in service.storage.photos(job_id)]
    # Until the file is sent: a delete waits for it, a new scale removes the old files after.
    release = _let_go(service, job_id, service.storage.hold(job_id), use_scale(result_dir, scale))
    try:
        keep = service.settings.keep_photo_location
        path = await _made(
            job_id, file_name, download_path, result_dir, file_name, photos, keep, scale
        )
        if path is None:
            raise HTTPException(
                404,
                f"no file {file_name[:100]!r}; the files are: "
                + ", ".join(download_files(result_dir).values()),
            )
    except BaseException:
        release()
        raise
    labels = [photo.name for photo in photos]
    name = download_name(labels, record.created_at, file_name, metric=scale is not None)
    return _HeldFile(
        path,
        release,
        headers={"content-disposition": content_disposition(name)},
        media_type=media_type(file_name),
    )


MAX_SCALE_BODY_BYTES = 64 * 1024


@router.put(
    "/jobs/{job_id}/scale",
    response_model=JobStatus,
    responses={code: _errors[code] for code in (400, 404, 409, 413, 503, 507)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScaleRequest.model_json_schema()}},
        }
    },
)
async def set_scale(job_id: str, request: Request, service: ServiceDep) -> JobStatus:
    """Scale a finished job's scene to metres: ``{"metres_per_unit": f}``, or two points of the
    scene in its own units (those of GET /points) and their true distance, ``{"points":
    [[x, y, z], [x, y, z]], "length_m": 0.3}``. Every download made after it is in metres; a
    second PUT replaces the first. Answered with the job's status."""
    _finished_job(service, job_id)
    if int(request.headers.get("content-length") or 0) > MAX_SCALE_BODY_BYTES:
        raise HTTPException(413, f"a scale is a few numbers: at most {MAX_SCALE_BODY_BYTES} bytes")
    try:
        factor = metres_per_unit(await request.body())
    except ScaleRefused as exc:
        raise HTTPException(400, str(exc)) from None
    await _store_scale(service, job_id, factor)
    return job_status(service, job_id)


@router.delete(
    "/jobs/{job_id}/scale",
    response_model=JobStatus,
    responses={code: _errors[code] for code in (404, 409, 503, 507)},
)
async def remove_scale(job_id: str, service: ServiceDep) -> JobStatus:
    """Back to the engine's units: the downloads made after it are as the engine made them."""
    _finished_job(service, job_id)
    await _store_scale(service, job_id, None)
    return job_status(service, job_id)


async def _store_scale(service: Service, job_id: str, factor: float | None) -> None:
    try:
        service.storage.set_scale(job_id, factor)
    except StorageError as exc:
        raise HTTPException(exc.status, f"the scale could not be stored: {exc.message}") from None
    await asyncio.to_thread(drop_other_scales, service.storage.result_dir(job_id), factor)


@router.get(
    "/jobs/{job_id}/points",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "point frames"},
        **{code: _errors[code] for code in (404, 409)},
    },
)
async def points(
    job_id: str,
    service: ServiceDep,
    format: Annotated[Literal["binary"], Query(description="binary point frames")] = "binary",
) -> Response:
    """All points of a finished job as binary point frames, one after the other (see
    docs/protocol.md), for a viewer that reloads a job. Made once, then served from disk."""
    _finished_job(service, job_id)
    result_dir = service.storage.result_dir(job_id)
    release = service.storage.hold(job_id)  # until the file is sent: a delete waits for it
    try:
        path = await _made(job_id, "the point frames", points_path, result_dir)
    except BaseException:
        release()
        raise
    assert path is not None
    return _HeldFile(path, release, media_type="application/octet-stream")


PHOTOS_GONE = (
    "the photos of this job are gone: a failed or cancelled job's photos are removed when it "
    "ends, a finished job's when it is deleted or expires"
)


@router.get(
    "/jobs/{job_id}/photos/{index}/thumbnail",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the photo, 256 px long side"},
        **{code: _errors[code] for code in (404, 500, 503, 507)},
    },
)
async def photo_thumbnail(job_id: str, index: str, service: ServiceDep) -> Response:
    """A small JPEG of photo ``index`` (its place in the status's ``photos``): upright, 256 px
    on its long side, without metadata (no location). Made once, then served from disk."""
    if service.storage.get(job_id) is None:
        raise HTTPException(404, NOT_FOUND)
    photos = service.storage.photos(job_id)
    number = int(index) if index.isascii() and index.isdigit() else -1
    if not 0 <= number < len(photos):
        raise HTTPException(
            404,
            f"the job has no photo {index[:20]!r}: its {len(photos)} photos are numbered from 0 "
            "as in the status's photos list",
        )
    release = service.storage.hold(job_id)  # until the file is sent: a delete waits for it
    try:
        limit = service.settings.max_photo_megapixels
        path = await _made(job_id, "the thumbnail", thumbnail, photos[number], limit)
        if path is None:
            raise HTTPException(404, PHOTOS_GONE)
    except BaseException:
        release()
        raise
    return _HeldFile(
        path, release, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
    )


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    responses={
        202: {"model": ErrorResponse, "description": "the job runs; what happens, in detail"},
        **{code: _errors[code] for code in (404, 503, 507)},
    },
)
async def delete_job(job_id: str, service: ServiceDep) -> Response:
    """Delete a job and its files: 204 when they are gone; 202 and a sentence for a job that
    runs, whose files are removed when it has stopped (it is gone from the API at once)."""
    try:
        outcome = service.jobs.delete(job_id)
    except StorageError as exc:
        raise HTTPException(exc.status, f"the job could not be deleted: {exc.message}") from None
    if outcome is None:
        raise HTTPException(404, NOT_FOUND)
    if outcome == "stopping":
        return JSONResponse({"detail": STOPPING}, status_code=202)
    return Response(status_code=204)


def job_status(service: Service, job_id: str) -> JobStatus:
    record = service.storage.get(job_id)
    if record is None:
        raise HTTPException(404, NOT_FOUND)
    job = service.jobs.get_open(job_id)
    ttl_s = service.settings.result_ttl_hours * 3600
    return JobStatus(
        job_id=record.id,
        state=record.state,  # type: ignore[arg-type]
        engine=record.engine,
        stage=record.stage,
        fraction=record.fraction,
        message=record.message,
        position=service.jobs.position(job) if job is not None else None,
        photos=[
            JobPhoto(
                name=p.label,
                width=p.width,
                height=p.height,
                mask=p.mask_path is not None,
                thumbnail=f"/api/jobs/{job_id}/photos/{index}/thumbnail"
                if p.path.is_file()
                else None,
            )
            for index, p in enumerate(service.storage.photos(job_id))
        ],
        num_points=record.num_points,
        views=[PhotoInfo(**view) for view in record.views],
        dropped=[DroppedInfo(**d) for d in record.dropped],
        quality=QualityInfo(**record.quality) if record.quality is not None else None,
        masks=record.masks,  # type: ignore[arg-type]
        scale=(
            ScaleInfo(metres_per_unit=record.metres_per_unit)
            if record.metres_per_unit is not None
            else None
        ),
        error=record.error,
        options=record.options or {},
        downloads=(
            download_urls(job_id, service.storage.result_dir(job_id))
            if record.state == "done"
            else {}
        ),
        created_at=_time(record.created_at),
        finished_at=_time(record.finished_at),
        expires_at=_time(record.finished_at + ttl_s if record.finished_at else None),
    )


def _finished_job(service: Service, job_id: str) -> JobRecord:
    record = service.storage.get(job_id)
    if record is None:
        raise HTTPException(404, NOT_FOUND)
    if record.state != "done":
        detail = f"the job has no results: it is {record.state}"
        raise HTTPException(409, detail + (f" ({record.error})" if record.error else ""))
    return record


def _let_go(
    service: Service, job_id: str, job: Callable[[], None], scale: Callable[[], None]
) -> Callable[[], None]:
    """Let go of a download's scale, then of its job; on the way, remove the files of scales
    that are no longer the job's (left by a download that began before the scale changed, or
    by a process that was killed). Runs in a thread."""

    def release() -> None:
        try:
            scale()
            record = service.storage.get(job_id)
            if record is not None:
                drop_other_scales(service.storage.result_dir(job_id), record.metres_per_unit)
        finally:
            job()

    return release


class _HeldFile(FileResponse):
    """A FileResponse that lets go of its job's files when it has been sent (or failed)."""

    def __init__(self, path: Path, release: Callable[[], None], **options: object) -> None:
        super().__init__(path, **options)  # type: ignore[arg-type]
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.to_thread(self._release)


async def _made(
    job_id: str, what: str, make: Callable[..., Path | None], *args: object
) -> Path | None:
    """``make(*args)`` in a thread: the file it makes, or an HTTPException with a sentence."""
    try:
        return await asyncio.to_thread(make, *args)
    except StorageError as exc:
        raise HTTPException(exc.status, f"{what} could not be made: {exc.message}") from None
    except MeshError as exc:  # the job's points do not make a surface: said, not an error
        raise HTTPException(409, f"{what} could not be made: {exc}") from None
    except Exception as exc:
        log.exception("%s of job %s could not be made", what, job_id)
        reason = without_paths(f"{type(exc).__name__}: {exc}")
        raise HTTPException(
            500,
            f"{what} could not be made: an internal error ({reason}), logged for the server's "
            "operator; the job's other files can still be downloaded",
        ) from None


def _time(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
