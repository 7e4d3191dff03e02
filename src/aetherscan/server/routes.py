"""The REST API under /api (OpenAPI docs at /docs). Knowing a job's id is the right to read and
delete it: ids are unguessable and no route lists them."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse

from aetherscan import __version__
from aetherscan.engines.base import Photo
from aetherscan.masks import NAMING, MaskError, pair_masks
from aetherscan.reconstruction import load_reconstruction
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
    encode_points,
)
from aetherscan.server.results import (
    RECONSTRUCTION_FILE,
    download_files,
    download_path,
    download_urls,
    media_type,
)
from aetherscan.server.service import Service, ServiceDep, client_of
from aetherscan.server.storage import JobRecord
from aetherscan.server.uploads import Refused

router = APIRouter(prefix="/api", tags=["api"])

NOT_FOUND = "there is no job with this id (it may have expired or been deleted)"
_errors = {code: {"model": ErrorResponse} for code in (400, 404, 409, 411, 413, 422, 429, 500, 503)}


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
    )


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobStatus,
    responses={code: _errors[code] for code in (400, 411, 413, 422, 429, 503)},
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
) -> JobStatus:
    """Upload photos (multipart field ``files``, repeated) and their masks (field ``masks``,
    repeated, each file named after its photo); their reconstruction starts at once. A photo or
    mask that cannot be used refuses the whole request, naming the photo."""
    jobs = service.jobs
    try:
        job = jobs.open_job(client_of(request), "rest")
    except Refused as exc:
        raise HTTPException(exc.status, exc.message) from None
    try:
        for upload in files:
            filename = upload.filename or ""
            if upload.size is not None:  # refuse a big file before reading it
                jobs.check_photo_size(job, jobs.photo_label(job, filename), upload.size)
            await jobs.add_photo(job, filename, await upload.read())
        await _add_masks(service, job, masks or [])
        jobs.submit(job)
    except Refused as exc:
        jobs.delete(job.id)
        raise HTTPException(exc.status, exc.message) from None
    return job_status(service, job.id)


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
    responses={code: _errors[code] for code in (404, 409, 500)},
)
async def download(job_id: str, file_name: str, service: ServiceDep) -> FileResponse:
    """A result file: scene.ply, cameras.json, and the exports that GET /api/info lists."""
    _finished_job(service, job_id)
    photos = [Photo(p.label, p.path) for p in service.storage.photos(job_id)]
    try:
        path = await asyncio.to_thread(
            download_path, service.storage.result_dir(job_id), file_name, photos
        )
    except Exception as exc:
        raise HTTPException(500, f"{file_name} could not be made: {exc}") from None
    if path is None:
        raise HTTPException(
            404,
            f"no file {file_name[:100]!r}; the files are: "
            + ", ".join(download_files(service.storage.result_dir(job_id)).values()),
        )
    return FileResponse(path, filename=file_name, media_type=media_type(file_name))


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
    docs/protocol.md), for a viewer that reloads a job."""
    _finished_job(service, job_id)
    path = service.storage.result_dir(job_id) / RECONSTRUCTION_FILE
    body = await asyncio.to_thread(_all_frames, path)
    return Response(body, media_type="application/octet-stream")


@router.delete("/jobs/{job_id}", status_code=204, responses={404: _errors[404]})
async def delete_job(job_id: str, service: ServiceDep) -> Response:
    """Delete a job and its files; a job that runs is cancelled first."""
    if not service.jobs.delete(job_id):
        raise HTTPException(404, NOT_FOUND)
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
            JobPhoto(name=p.label, width=p.width, height=p.height, mask=p.mask_path is not None)
            for p in service.storage.photos(job_id)
        ],
        num_points=record.num_points,
        views=[PhotoInfo(**view) for view in record.views],
        dropped=[DroppedInfo(**d) for d in record.dropped],
        quality=QualityInfo(**record.quality) if record.quality is not None else None,
        masks=record.masks,  # type: ignore[arg-type]
        error=record.error,
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


def _all_frames(path: Path) -> bytes:
    frames, _ = encode_points(load_reconstruction(path).point_cloud(), binary=True)
    return b"".join(frames)


def _time(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
