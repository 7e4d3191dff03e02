"""Fast3R ViT-L/512 forward on CPU: wall and CPU time per stage, fp32 and a reduced-precision mode.

Random weights (the architecture, not the checkpoint, sets the cost), V views of H x W.

    PYTHONPATH=src python benchmarks/bench_fast3r_cpu.py --views 2 --height 384 --width 512

CPU time (summed over threads) is reported next to wall time because the machine may be shared:
on an idle machine wall ~ CPU / threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from aetherscan.models.fast3r import Fast3R, fast3r_vitl_512_config


def random_vitl_512(seed: int = 0) -> Fast3R:
    """ViT-L/512 with random weights (std 0.02), built without the slow default init."""
    with torch.device("meta"):
        model = Fast3R(fast3r_vitl_512_config())
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # LayerNorm scale
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
    model.reset_buffers()
    return model.eval()


class StageClock:
    """Wall and CPU seconds spent in the encoder, the fusion transformer and the heads."""

    def __init__(self, model: Fast3R) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        stages = {"encoder": model.encoder, "fusion": model.decoder}
        stages.update({f"head_{n}": h for n, h in model._heads().items()})
        for name, module in stages.items():
            module.register_forward_pre_hook(self._start(name))
            module.register_forward_hook(self._stop(name))
        self._t0: dict[str, tuple[float, float]] = {}

    def _start(self, name):
        def hook(*_):
            self._t0[name] = (time.perf_counter(), time.process_time())

        return hook

    def _stop(self, name):
        def hook(*_):
            w, c = self._t0.pop(name)
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c

        return hook

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()


@contextmanager
def clock():
    out = {}
    w, c = time.perf_counter(), time.process_time()
    yield out
    out["wall"], out["cpu"] = time.perf_counter() - w, time.process_time() - c


MODES = {
    "fp32-direct": "fp32, direct convolutions",
    "fp32": "fp32, Winograd head convolutions (the default)",
    "int8": "dynamic int8 linears, Winograd head convolutions",
    "bf16": "bf16 weights and activations",
}


def build(mode: str) -> Fast3R:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    model = random_vitl_512()
    model.winograd_convolutions = mode != "fp32-direct"
    if mode == "int8":
        from aetherscan.models.int8 import quantize_int8

        quantize_int8(model)
    elif mode == "bf16":
        model.to(torch.bfloat16)
    return model


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def run(model: Fast3R, views, repeats: int, label: str) -> tuple[list[dict], float]:
    stages = StageClock(model)
    ids = torch.arange(len(views))
    with torch.inference_mode():
        model(views, ids)  # warm-up: allocator, oneDNN primitive caches
    best = None
    for _ in range(repeats):
        stages.reset()
        print(f"  [{label}] {load()}", flush=True)
        with torch.inference_mode(), clock() as t:
            preds = model(views, ids)
        print(f"  [{label}] forward {t['wall']:.2f} s wall, {t['cpu']:.2f} s CPU", flush=True)
        for name in stages.wall:
            print(f"      {name:12s} {stages.wall[name]:6.2f} s wall {stages.cpu[name]:6.2f} s CPU")
        best = t["wall"] if best is None else min(best, t["wall"])
    return preds, best


def profile(model: Fast3R, views, label: str) -> None:
    """One more forward under torch.profiler: the operators that took the most time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    with torch.inference_mode(), profiler(activities=[ProfilerActivity.CPU]) as prof:
        model(views, torch.arange(len(views)))
    print(f"  [{label}] operators by time (each call timed on the calling thread):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def errors(preds, ref) -> str:
    lines = []
    for key in ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local"):
        diff = torch.cat(
            [(p[key] - r[key]).abs().flatten() for p, r in zip(preds, ref, strict=True)]
        )
        scale = torch.cat([r[key].abs().flatten() for r in ref]).median()
        lines.append(
            f"    {key:20s} max {diff.max():.3e}  median {diff.median():.3e}"
            f"  (median |fp32| {scale:.3e})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print an operator profile")
    parser.add_argument(
        "--modes",
        default="fp32-direct,fp32,int8",
        help=f"comma list of {', '.join(MODES)}; errors are against the first",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{platform.processor() or platform.machine()}, {args.threads} threads"
    )
    g = torch.Generator().manual_seed(1)
    views = [
        torch.rand(1, 3, args.height, args.width, generator=g) * 2 - 1 for _ in range(args.views)
    ]
    print(f"{args.views} views {args.width}x{args.height}")
    # The first mode run is the reference for the errors of the others.
    ref = None
    for mode in args.modes.split(","):
        model = build(mode)
        preds, wall = run(model, views, args.repeats, mode)
        if args.profile:
            profile(model, views, mode)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(f"{mode} ({MODES[mode]}): {wall:.2f} s, process peak RSS so far {peak_gib:.1f} GiB")
        if ref is None:
            ref = preds
            print(f"    (reference for the errors below: {mode})")
        else:
            print(errors(preds, ref))
        del model


if __name__ == "__main__":
    main()
