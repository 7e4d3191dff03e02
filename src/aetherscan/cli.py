"""The ``aetherscan`` command: ``serve``, ``worker``, ``reconstruct``, ``evaluate``, ``plan``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from aetherscan.models.hub import DEFAULT_WEIGHTS
from aetherscan.settings import Settings


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        default=None,
        metavar="{auto,fast3r,colmap,MODULE:FACTORY}",
        help="auto: Fast3R where its weights are found, COLMAP otherwise; or an engine plug-in",
    )
    group.add_argument(
        "--weights",
        default=None,
        metavar="FOLDER_OR_HUB_ID",
        help=f"Fast3R model folder or hub id (default {DEFAULT_WEIGHTS})",
    )
    group.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    group.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16", "int8"], default=None)
    group.add_argument("--image-size", type=int, choices=[512, 384, 224], default=None)
    group.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="keep points with at least this confidence (default 1.0)",
    )
    group.add_argument(
        "--max-points-per-view",
        default=None,
        help="most points kept per view, or 'all' (default 10000)",
    )
    group.add_argument(
        "--refine-poses",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Fast3R: refine the cameras by bundle adjustment over features matched with the "
        "pointmaps as guides (setting refine_poses; default off)",
    )
    group.add_argument(
        "--threads", type=int, default=None, help="COLMAP's CPU threads (default: all cores)"
    )


def _add_queue_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("scale-out (docs/scaling.md)")
    group.add_argument(
        "--broker",
        default=None,
        metavar="redis://HOST:6379/0",
        help="the Redis that carries jobs to workers (AETHERSCAN_BROKER_URL)"
        + ("; needed" if required else "; without it the server runs jobs itself"),
    )
    group.add_argument(
        "--storage-url",
        default=None,
        metavar="s3://BUCKET/PREFIX",
        help="photos and results in object storage (AETHERSCAN_STORAGE_URL; endpoint: "
        "AETHERSCAN_S3_ENDPOINT_URL); default: the data folder, shared with the workers",
    )


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "engine": args.engine,
            "weights": args.weights,
            "device": args.device,
            "dtype": args.dtype,
            "image_size": args.image_size,
            "min_confidence": args.min_confidence,
            "max_points_per_view": args.max_points_per_view,
            "refine_poses": args.refine_poses,
            "colmap_threads": args.threads,
            "broker_url": getattr(args, "broker", None),
            "storage_url": getattr(args, "storage_url", None),
        }.items()
        if value is not None
    }
    for key in ("host", "port", "data_dir"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return Settings(**overrides)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aetherscan", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web app and API server")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.add_argument(
        "--data-dir", type=Path, default=None, help="jobs and results (default ./data)"
    )
    _add_engine_options(serve)
    _add_queue_options(serve, required=False)

    worker = commands.add_parser(
        "worker",
        help="run jobs that `serve --broker` enqueues: one engine, one device (docs/scaling.md)",
    )
    worker.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's data folder, shared, when there is no --storage-url (default ./data)",
    )
    worker.add_argument(
        "--name", default=None, help="the worker's name in logs (default aetherscan@HOST-PID)"
    )
    _add_engine_options(worker)
    _add_queue_options(worker, required=True)

    rec = commands.add_parser("reconstruct", help="photos in, point cloud and cameras out")
    rec.add_argument("photos", nargs="+", type=Path, help="photo files or folders of photos")
    rec.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("scene.ply"),
        help="output file; its extension picks the format (.ply, .glb, .zip, ...)",
    )
    rec.add_argument("--cameras", type=Path, default=None, help="also write cameras.json here")
    rec.add_argument(
        "--mesh",
        type=Path,
        default=None,
        metavar="MESH",
        help="also write a triangle mesh with vertex colours here (.ply, .glb or .obj)",
    )
    rec.add_argument(
        "--masks",
        type=Path,
        default=None,
        metavar="DIR",
        help="masks of the photos: the mask of x.jpg is DIR/x.png (or x.jpg.png, or x with "
        "another image suffix); black = ignore, anything else = the subject. A photo without "
        "one has no mask",
    )
    _add_engine_options(rec)

    ev = commands.add_parser(
        "evaluate", help="score an engine's poses against ground-truth cameras"
    )
    ev.add_argument("photos", type=Path, help="folder of photos")
    ev.add_argument(
        "ground_truth", type=Path, help="ground-truth cameras JSON (docs/evaluation.md)"
    )
    ev.add_argument("--json", type=Path, default=None, help="also write the scores here")
    _add_engine_options(ev)

    plan = commands.add_parser(
        "plan",
        help="a Fast3R job's predicted peak memory and chunks, and whether it fits; "
        "exit status 0 if it fits, 1 if not",
    )
    plan.add_argument("--views", type=int, required=True, help="number of photos")
    plan.add_argument("--image-size", type=int, choices=[512, 384, 224], default=512)
    plan.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    plan.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16", "int8"], default="auto")
    plan.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="memory of the device in GiB (2^30 bytes); default: what is free, or 80 for a "
        "CUDA GPU that is not on this machine",
    )
    plan.add_argument(
        "--weights",
        default=None,
        metavar="FOLDER_OR_HUB_ID",
        help="read the model's config.json here if it is on this machine (nothing is loaded "
        "or downloaded); default: the released ViT-L/512",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    # The server says what it is doing (which engine, and why); the one-shot commands stay quiet.
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "plan":
        from aetherscan.plan import plan_command

        return plan_command(
            args.views, args.image_size, args.device, args.dtype, args.memory_gb, args.weights
        )
    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        print(f"aetherscan: {problems}", file=sys.stderr)
        return 2
    if args.command == "worker":
        from aetherscan.workers.worker import run_worker

        return run_worker(settings, name=args.name)
    if args.command == "serve":
        from aetherscan.server.app import serve

        serve(settings)
        return 0
    if args.command == "reconstruct":
        from aetherscan.pipeline import reconstruct_command

        return reconstruct_command(
            settings, args.photos, args.output, args.cameras, args.masks, args.mesh
        )
    if args.command == "evaluate":
        from aetherscan.evaluation import evaluate_command

        return evaluate_command(settings, args.photos, args.ground_truth, args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
