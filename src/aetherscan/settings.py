"""All knobs of AetherScan in one place: environment variables prefixed ``AETHERSCAN_``.

Build one ``Settings`` and pass it in (``create_app(settings)``, ``create_engine(...)``); nothing
reads the environment at import time, and tests build their own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aetherscan.models.hub import DEFAULT_WEIGHTS

EngineName = Literal["auto", "fast3r", "colmap"]
ENGINE_NAMES = ("auto", "fast3r", "colmap")
# Or an engine of one's own: "package.module:factory", a callable with no arguments.
PLUGIN_ENGINE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
DtypeName = Literal["auto", "fp32", "bf16", "fp16", "int8"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AETHERSCAN_", env_nested_delimiter="__")

    # Engine
    engine: str = Field(
        "auto", description="auto, fast3r, colmap, or package.module:factory (an engine plug-in)"
    )
    weights: str = Field(DEFAULT_WEIGHTS, description="Fast3R model folder or Hugging Face hub id")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'")
    dtype: DtypeName = Field(
        "auto",
        description="inference dtype; auto = bf16 on CUDA, fp32 on CPU; int8 = CPU int8 matmuls",
    )
    image_size: Literal[512, 384, 224] = 512
    min_confidence: float = Field(1.0, description="keep points with confidence >= this")
    max_points_per_view: int | Literal["all"] = 10_000
    refine_poses: bool = Field(
        False,
        description="Fast3R: refine the cameras by bundle adjustment over features matched with "
        "the pointmaps as guides (a job may choose otherwise); COLMAP's always are",
    )
    colmap_max_image_px: int = Field(1024, description="COLMAP works at this long side")
    colmap_threads: int = Field(-1, description="COLMAP's CPU threads; -1: all cores")

    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    # Origins (scheme://host[:port]) whose web pages may use the API and the WebSocket besides
    # the server's own; "*" for any. Others are refused (aetherscan.server.browsers).
    cors_origins: list[str] = Field(default_factory=list)
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="comma list of proxy addresses (or *) whose X-Forwarded-For names the "
        "client, for the limits per client; others are the client themselves",
    )
    web_dir: Path | None = Field(None, description="the viewer's files; default: web/ of the repo")
    keep_photo_location: bool = Field(
        False,
        description="exports with photos keep where they were taken (EXIF GPS, XMP and IPTC "
        "places); by default that is taken out, pixels and other fields unchanged",
    )

    # Limits: every refusal names the limit and its setting.
    max_photos_per_job: int = 500
    max_photo_mb: float = 40.0
    max_job_mb: float = 2000.0
    max_photo_megapixels: float = 100.0
    max_message_mb: float = 64.0
    max_video_mb: float = 1000.0
    max_video_seconds: float = 600.0
    max_video_frames: int = Field(60, description="frames taken from a video at most")
    max_jobs_per_client: int = 2
    max_jobs_total: int = 16
    max_queue_length: int = 32
    idle_timeout_s: float = 600.0
    result_ttl_hours: float = 24.0 * 7
    # WebSocket sessions: each may buffer up to twice max_message_mb while a message arrives.
    max_ws_sessions_per_client: int = 8
    max_ws_sessions_total: int = 64
    reattach_grace_s: float = Field(
        60.0,
        description="how long the job of a dropped WebSocket (feature attach) waits for its "
        "client to attach again before it is cancelled; 0 cancels at once",
    )

    # Scale-out (docs/scaling.md): without a broker, serve runs the jobs itself.
    broker_url: str | None = Field(
        None,
        description="redis://HOST:6379/0: serve enqueues the jobs and `aetherscan worker` "
        "processes on any machine run them",
    )
    storage_url: str | None = Field(
        None,
        description="s3://bucket/prefix: photos and results in S3-compatible object storage, "
        "for workers that share no disk with the server; none: the data folder",
    )
    s3_endpoint_url: str | None = Field(None, description="MinIO and the like: http://host:9000")
    job_time_limit_s: float = Field(
        3600.0, description="a queued job running longer fails, and its worker process is replaced"
    )
    max_tries: int = Field(
        3, description="runs of a job whose worker stopped (killed, out of memory) before it fails"
    )
    worker_lease_s: float = Field(
        15.0, description="a worker silent this long is taken for dead and its job runs again"
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value in ENGINE_NAMES or PLUGIN_ENGINE.match(value):
            return value
        raise ValueError(
            f"unknown engine {value!r}: choose auto, fast3r or colmap, or name a plug-in as "
            "package.module:factory"
        )

    def engine_options(self) -> dict[str, Any]:
        """The keyword arguments of ``aetherscan.engines.create_engine`` besides the name."""
        return {
            "weights": self.weights,
            "device": self.device,
            "dtype": self.dtype,
            "image_size": self.image_size,
            "min_confidence": self.min_confidence,
            "max_points_per_view": self.max_points_per_view,
            "refine_poses": self.refine_poses,
            "colmap_max_image_px": self.colmap_max_image_px,
            "colmap_threads": self.colmap_threads,
        }
