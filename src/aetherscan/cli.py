"""The ``aetherscan`` command: ``serve``, ``reconstruct``, ``evaluate``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aetherscan.settings import DEFAULT_WEIGHTS, Settings


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=["auto", "fast3r", "colmap"],
        default=None,
        help="auto: Fast3R where its weights are found, COLMAP otherwise",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    # The server says what it is doing (which engine, and why); the one-shot commands stay quiet.
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    settings = _settings_from(args)
    if args.command == "serve":
        from aetherscan.server.app import serve

        serve(settings)
        return 0
    if args.command == "reconstruct":
        from aetherscan.pipeline import reconstruct_command

        return reconstruct_command(settings, args.photos, args.output, args.cameras, args.masks)
    if args.command == "evaluate":
        from aetherscan.evaluation import evaluate_command

        return evaluate_command(settings, args.photos, args.ground_truth, args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
