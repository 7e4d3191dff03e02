"""Measured peak memory of Fast3R jobs against the planner's prediction (aetherscan.models.memory).

Each point of the grid (model, views, image size, dtype, head chunk) runs in a fresh process: it
builds the model with random weights (memory does not depend on their values), runs one forward
pass as ``Fast3REngine`` does (``torch.inference_mode()``, autocast to the dtype) and then the
engine's post-processing steps (focal, PnP per view in 2 threads, alignment, depth, the points
kept). On the CPU the peak is the process's peak resident memory (VmHWM) less its resident memory
just before the model is built: that is what the operating system has to find, glibc's and
oneDNN's slack included. The high-water mark is reset (``/proc/self/clear_refs``) at each stage
boundary, so every stage's peak is measured, not only the job's.

    PYTHONPATH=src python benchmarks/bench_fast3r_memory.py --save /tmp/memory.json
    PYTHONPATH=src python benchmarks/bench_fast3r_memory.py --load /tmp/memory.json --fit

``--fit`` fits the planner's coefficients to the points marked ``fit`` (least squares on the
relative error of every stage's peak) and prints them for ``memory.py``; the table then shows
the held-out points with those coefficients. Without it the module's coefficients are checked.

``--device cuda`` (not yet run: no GPU has been lent) measures ``torch.cuda.max_memory_allocated``
per stage instead, bf16 by default, on the CUDA grid below.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from aetherscan.geometry.align import align_local_to_global
from aetherscan.geometry.camera import intrinsics_matrix, transform_points
from aetherscan.geometry.focal import estimate_focal
from aetherscan.geometry.pnp import solve_pnp
from aetherscan.models import memory
from aetherscan.models.fast3r import (
    DecoderConfig,
    EncoderConfig,
    Fast3R,
    Fast3RConfig,
    fast3r_vitl_512_config,
)


def configs() -> dict[str, Fast3RConfig]:
    """The models measured: ViT-L/512 as released, the same widths with 4 blocks each (the
    per-token memory of the real model at a twelfth of its time, for many views), and a small
    model with the released heads (the measuring test)."""
    vitl = fast3r_vitl_512_config()
    shallow = dataclasses.replace(
        vitl,
        encoder=dataclasses.replace(vitl.encoder, depth=4),
        decoder=dataclasses.replace(vitl.decoder, depth=4),
    )
    small = dataclasses.replace(
        vitl,
        encoder=EncoderConfig(embed_dim=256, depth=2, num_heads=4),
        decoder=DecoderConfig(embed_dim=256, depth=2, num_heads=4, random_image_idx_embedding=True),
    )
    return {"vitl": vitl, "vitl-d4": shallow, "small": small}


# (model, views, image size, dtype, head chunk, role)
CPU_GRID = [
    ("vitl", 2, 224, "fp32", 1, "fit"),
    ("vitl", 4, 224, "fp32", 4, "fit"),
    ("vitl", 8, 224, "fp32", 2, "fit"),
    ("vitl", 2, 384, "fp32", 1, "fit"),
    ("vitl", 2, 384, "fp32", 2, "fit"),
    ("vitl-d4", 16, 224, "fp32", 1, "fit"),
    ("vitl-d4", 32, 224, "fp32", 1, "fit"),
    ("vitl-d4", 8, 224, "fp32", 8, "fit"),
    ("vitl-d4", 8, 384, "fp32", 1, "fit"),
    ("vitl-d4", 4, 384, "fp32", 4, "fit"),
    ("vitl", 2, 512, "fp32", 1, "held-out"),
    ("vitl", 2, 512, "fp32", 2, "held-out"),
    ("vitl", 4, 384, "fp32", 1, "held-out"),
    ("vitl", 4, 224, "int8", 1, "held-out"),
    ("vitl", 2, 384, "int8", 1, "held-out"),
    ("vitl-d4", 64, 224, "fp32", 1, "held-out"),
    ("vitl-d4", 16, 384, "fp32", 2, "held-out"),
    ("small", 4, 224, "fp32", 2, "held-out"),
]
CUDA_GRID = [("vitl", v, 512, "bf16", 8, "held-out") for v in (2, 8, 32, 128, 256, 512, 1000)] + [
    ("vitl", 128, 512, "bf16", 1, "held-out"),
    ("vitl", 32, 224, "fp32", 8, "held-out"),
]


# ---------------------------------------------------------------------------------- child


def random_model(config: Fast3RConfig) -> Fast3R:
    """The model with random weights, every page written (untouched pages take no memory)."""
    with torch.device("meta"):
        model = Fast3R(config)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02, generator=generator)
    model.reset_buffers()
    return model.eval()


class StageMeter:
    """Peak memory per stage of the pass: at each boundary the peak so far is read and reset."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peaks: dict[str, int] = {}
        self.starts: dict[str, int] = {}  # memory in use when the stage began
        self.current = 0
        self.clear_refs = Path("/proc/self/clear_refs")

    def now(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return _status_kib("VmRSS") * 1024

    def end(self, stage: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peaks[stage] = torch.cuda.max_memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peaks[stage] = _status_kib("VmHWM") * 1024
            self.clear_refs.write_text("5")  # peak RSS := current RSS (Linux >= 4.0)
        self.starts[stage] = self.current
        self.current = self.now()

    def watch(self, model: Fast3R) -> None:
        """Stage boundaries from hooks: encoder, fusion, heads, then outputs until the return."""
        first = {"encoder": True, "head": True}

        def encoder_starts(*_: object) -> None:
            if first["encoder"]:
                first["encoder"] = False
                self.end("setup")

        def head_starts(*_: object) -> None:
            if first["head"]:
                first["head"] = False
                self.end("fusion")

        heads = model._heads()
        model.encoder.register_forward_pre_hook(encoder_starts)
        model.decoder.register_forward_pre_hook(lambda *_: self.end("encoder"))
        model.downstream_head.register_forward_pre_hook(head_starts)
        list(heads.values())[-1].register_forward_hook(lambda *_: self.end("heads"))


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def post_process(preds: list[dict[str, torch.Tensor]], workers: int) -> list[tuple]:
    """The engine's steps after the network (engines/fast3r.py), on random-weight outputs."""
    keys = ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local")
    maps = [[p[k][0].float().cpu().numpy() for k in keys] for p in preds]  # no copy on the CPU
    focal = estimate_focal(maps[0][0], maps[0][1])

    def pose(view: list[np.ndarray]) -> np.ndarray:
        pts, conf = view[0], view[1]
        height, width = conf.shape
        K = intrinsics_matrix(focal, width / 2, height / 2)
        v, u = np.mgrid[0:height, 0:width]
        pixels = np.stack([u, v], axis=-1).astype(np.float64)
        mask = conf > 1.0
        result = solve_pnp(pts[mask], pixels[mask], K, iterations=100, reprojection_px=5.0)
        return np.eye(4) if result is None else result.cam_from_world

    with ThreadPoolExecutor(workers) as pool:
        poses = list(pool.map(pose, maps))
    kept = []
    for (global_pts, global_conf, local_pts, local_conf), cam_from_world in zip(
        maps, poses, strict=True
    ):
        aligned, _ = align_local_to_global(local_pts, global_pts, global_conf, top_fraction=0.15)
        depth = transform_points(cam_from_world, aligned)[..., 2].astype(np.float32)
        valid = np.isfinite(aligned).all(axis=-1) & np.isfinite(depth) & (depth > 0)
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        points = aligned.reshape(-1, 3)
        confidence = local_conf.reshape(-1).astype(np.float32)
        index = np.flatnonzero(np.isfinite(points).all(axis=1) & (confidence >= 1.0))
        index = index[np.argsort(-confidence[index], kind="stable")[:10_000]]
        kept.append((points[index], confidence[index], depth, local_conf.astype(np.float32)))
    return kept


def child(spec: dict) -> dict:
    device = torch.device(spec["device"])
    torch.set_num_threads(2)
    config = configs()[spec["model"]]
    shapes = memory.view_shapes(spec["views"], spec["size"])
    meter = StageMeter(device)
    before = meter.now()
    started = time.perf_counter()
    model = random_model(config).to(device)
    if spec["dtype"] == "int8":
        from aetherscan.models.int8 import quantize_int8

        quantize_int8(model)
        # The replaced float32 Linear modules sit in reference cycles: without a collection
        # their 2.4 GB stay resident until Python's collector happens to run.
        gc.collect()
    model.head_chunk_views = spec["chunk"]
    meter.watch(model)
    meter.end("build")  # not part of the job: int8 quantises an fp32 model here
    generator = torch.Generator().manual_seed(1)
    views = [(torch.rand(1, 3, H, W, generator=generator) * 2 - 1).to(device) for H, W in shapes]
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["dtype"], torch.float32)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32),
    ):
        preds = model(views)
    meter.end("outputs")
    post_process(preds, workers=max(1, min(8, os.cpu_count() or 1, len(views))))
    meter.end("post-processing")
    stages = {k: v - before for k, v in meter.peaks.items() if k != "build"}
    starts = {k: v - before for k, v in meter.starts.items() if k != "build"}
    return {**spec, "stages": stages, "starts": starts, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------- parent


def measure(model: str, views: int, size: int, dtype: str, chunk: int, device: str = "cpu") -> dict:
    """One grid point in a fresh process; returns its stage peaks in bytes."""
    spec = dict(model=model, views=views, size=size, dtype=dtype, chunk=chunk, device=device)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def predicted_stages(point: dict, coefficients: memory.Coefficients) -> dict[str, int]:
    estimate = memory.predict_peak(
        configs()[point["model"]],
        memory.view_shapes(point["views"], point["size"]),
        point["dtype"],
        point["chunk"],
        point["device"],
        coefficients=coefficients,
    )
    return estimate.stages


COEFFICIENT_NAMES = (
    "kept",
    "encoder_block",
    "fusion_block",
    "head_per_view",
    "head_fixed",
    "overhead_bytes",
    "carried",
)


def fit(points: list[dict]) -> memory.Coefficients:
    """Least squares on the relative error of every stage's peak; negative factors are dropped
    (set to zero) one at a time and the rest refitted.

    A stage whose peak did not rise above the memory in use when it began says nothing about its
    own tensors: they fitted in what glibc kept from earlier stages. Those stages are left out.
    """
    zero = memory.Coefficients(*([0.0] * len(COEFFICIENT_NAMES)), fitted=True)
    rows, targets = [], []
    for point in points:
        fixed = predicted_stages(point, zero)
        basis = [
            predicted_stages(point, dataclasses.replace(zero, **{name: 1.0}))
            for name in COEFFICIENT_NAMES
        ]
        for stage, measured in point["stages"].items():
            grew = measured > 1.02 * point["starts"][stage]
            if stage not in fixed or not grew:
                continue
            rows.append([(b[stage] - fixed[stage]) / measured for b in basis])
            targets.append((measured - fixed[stage]) / measured)
    A, y = np.array(rows), np.array(targets)
    active = list(range(len(COEFFICIENT_NAMES)))
    while True:
        solution, *_ = np.linalg.lstsq(A[:, active], y, rcond=None)
        if (solution >= 0).all():
            break
        active.pop(int(np.argmin(solution)))
    values = dict.fromkeys(COEFFICIENT_NAMES, 0.0)
    values.update({COEFFICIENT_NAMES[i]: float(v) for i, v in zip(active, solution, strict=True)})
    return memory.Coefficients(**values, fitted=True)


def table(points: list[dict], coefficients: memory.Coefficients) -> str:
    lines = [
        "| model | views | size | dtype | head chunk | role | measured GiB | predicted GiB | "
        "error | measured peak stage | predicted peak stage |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    errors: dict[str, list[float]] = {"fit": [], "held-out": []}
    for p in points:
        predicted = predicted_stages(p, coefficients)
        measured_peak = max(p["stages"].values())
        measured_stage = max(p["stages"], key=p["stages"].__getitem__)
        predicted_peak = max(predicted.values())
        error = predicted_peak / measured_peak - 1
        errors[p["role"]].append(abs(error))
        H, W = memory.LANDSCAPE_SHAPES[p["size"]]
        lines.append(
            f"| {p['model']} | {p['views']} | {W}x{H} | {p['dtype']} | {p['chunk']} | "
            f"{p['role']} | {measured_peak / memory.GIB:.3f} | {predicted_peak / memory.GIB:.3f} | "
            f"{100 * error:+.1f} % | {measured_stage} | "
            f"{max(predicted, key=predicted.__getitem__)} |"
        )
    for role, values in errors.items():
        if values:
            lines.append(
                f"\n{role}: {len(values)} points, |error| max {100 * max(values):.1f} %, "
                f"median {100 * statistics.median(values):.1f} %"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--save", type=Path, help="write the measurements here (JSON)")
    parser.add_argument("--load", type=Path, help="use these measurements instead of measuring")
    parser.add_argument("--fit", action="store_true", help="fit the coefficients to the fit points")
    parser.add_argument(
        "--only", help="measure only the grid points of this dtype, in place of --load's"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    points = json.loads(args.load.read_text()) if args.load else []
    if args.only:
        points = [p for p in points if p["dtype"] != args.only]
    if args.only or not args.load:
        grid = CUDA_GRID if args.device == "cuda" else CPU_GRID
        grid = [g for g in grid if args.only in (None, g[3])]
        print(f"torch {torch.__version__}, {args.device}, load {os.getloadavg()[0]:.2f}")
        for model, views, size, dtype, chunk, role in grid:
            try:
                point = measure(model, views, size, dtype, chunk, args.device)
            except RuntimeError as exc:
                print(f"  {model} {views} views {size} {dtype} chunk {chunk}: {exc}")
                continue
            point["role"] = role
            points.append(point)
            peak = max(point["stages"].values()) / memory.GIB
            print(
                f"  {model} {views} views {size} {dtype} chunk {chunk}: {peak:.3f} GiB "
                f"in {point['seconds']:.0f} s (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            if args.save:
                args.save.write_text(json.dumps(points, indent=1))
    coefficients = memory.CUDA_COEFFICIENTS if args.device == "cuda" else memory.CPU_COEFFICIENTS
    if args.fit:
        coefficients = fit([p for p in points if p["role"] == "fit"])
        print(f"fitted: {coefficients}")
    print(table(points, coefficients))


if __name__ == "__main__":
    main()
