"""Fast3R ViT-L/512 forward time and peak memory as the number of views grows (GPU benchmark).

Random weights (the architecture sets the cost), V views of 512x384, one forward pass under
``torch.inference_mode()`` with autocast to the chosen dtype, as ``Fast3REngine`` runs it. The
paper's A100 figures for comparison: 32 views 0.51 s / 13.3 GiB, 1000 views 138 s / 63 GiB.

    PYTHONPATH=src python benchmarks/bench_fast3r_views.py --device cuda --dtype bf16 \\
        --views 2,8,32,64,128,256,512,1000

Each view count runs after a warm-up at that count; peak memory is
``torch.cuda.max_memory_allocated`` over the timed pass, printed beside what the memory planner
(``aetherscan.models.memory``) predicts for the forward pass and the planner's error. A view count that runs out of memory is
reported as such and the sweep stops there. On the CPU the same script checks the plumbing with
small counts (peak memory is then the process's peak RSS, which only grows).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch
from bench_fast3r_cpu import random_vitl_512

from aetherscan.models.memory import GIB, predict_peak

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def forward_once(model, views, dtype: torch.dtype, device: torch.device) -> float:
    ids = torch.arange(len(views))
    synchronize(device)
    start = time.perf_counter()
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
    ):
        model(views, ids)
    synchronize(device)
    return time.perf_counter() - start


def planned_gib(model, count: int, args: argparse.Namespace, device: torch.device) -> float:
    """The planner's peak for the forward pass alone (on a GPU the engine's post-processing runs
    on the host), with the head chunk the model runs (8 on a GPU, 1 on the CPU)."""
    chunk = model.head_chunk_views or (1 if device.type == "cpu" else 8)
    estimate = predict_peak(
        model.config, [(args.height, args.width)] * count, args.dtype, chunk, device.type
    )
    forward = {k: v for k, v in estimate.stages.items() if k != "post-processing"}
    return max(forward.values()) / GIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--views", default="2,8,32,64,128,256,512,1000")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    counts = [int(v) for v in args.views.split(",")]
    if max(counts) > 1000:
        raise SystemExit("Fast3R's image-index table has 1000 rows: at most 1000 views")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"torch {torch.__version__}, {name}, {args.dtype}, views of {args.width}x{args.height}")
    model = random_vitl_512().to(device)
    g = torch.Generator().manual_seed(1)
    print(f"{'views':>6} {'seconds':>9} {'peak GiB':>9} {'planned GiB':>12} {'error':>7}")
    for count in counts:
        views = [
            (torch.rand(1, 3, args.height, args.width, generator=g) * 2 - 1).to(device)
            for _ in range(count)
        ]
        try:
            forward_once(model, views, dtype, device)  # warm-up: kernels, allocator
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = forward_once(model, views, dtype, device)
        except torch.OutOfMemoryError:
            print(f"{count:>6} {'out of memory':>19}")
            break
        peak, planned = peak_gib(device), planned_gib(model, count, args, device)
        error = 100 * (planned - peak) / peak
        print(
            f"{count:>6} {seconds:>9.2f} {peak:>9.1f} {planned:>12.1f} {error:>+6.1f}%", flush=True
        )
        del views
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
