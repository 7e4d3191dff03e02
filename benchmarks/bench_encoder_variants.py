"""The ViT-L encoder on 2 views of 512x384 under CPU alternatives that were tried and not kept.

* ``eager``: the model as it runs (MKL sgemm linears);
* ``onednn``: every Linear through oneDNN (``torch.ops.mkldnn._linear_pointwise``), the MLP's
  GELU fused into its first linear;
* ``compile``: ``torch.compile`` (inductor, with freezing), compile time reported apart.

Each variant runs ``--repeats`` times after a warm-up, interleaved so that drifts of the shared
machine hit all of them alike.

    PYTHONPATH=src python benchmarks/bench_encoder_variants.py --variants eager,onednn,compile
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
from bench_fast3r_cpu import random_vitl_512
from torch import nn

from aetherscan.models.blocks import Mlp


def onednn_linear(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])  # (B*N, C_in)
    out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
    return out.reshape(*x.shape[:-1], -1)  # (B, N, C_out)


def onednn_mlp(self: Mlp, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])  # (B*N, C)
    fc1, fc2 = self.fc1, self.fc2
    hidden = torch.ops.mkldnn._linear_pointwise(flat, fc1.weight, fc1.bias, "gelu", [], "none")
    out = torch.ops.mkldnn._linear_pointwise(hidden, fc2.weight, fc2.bias, "none", [], "")
    return out.reshape(x.shape)  # (B, N, C)


@contextmanager
def patched(variant: str):
    """The oneDNN variant swaps the forward of every Linear and Mlp while it runs."""
    if variant != "onednn":
        yield
        return
    linear, mlp = nn.Linear.forward, Mlp.forward
    nn.Linear.forward, Mlp.forward = onednn_linear, onednn_mlp
    try:
        yield
    finally:
        nn.Linear.forward, Mlp.forward = linear, mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="eager,onednn")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = random_vitl_512().encoder
    images = torch.rand(2, 3, 384, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    variants = args.variants.split(",")
    runners = {name: encoder for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        if "compile" in runners:
            import torch._inductor.config as inductor

            inductor.freezing = True
            runners["compile"] = torch.compile(encoder)
            start = time.perf_counter()
            runners["compile"](images)
            print(f"compile: first call (compiling) {time.perf_counter() - start:.1f} s")
        for name in variants:
            with patched(name):
                runners[name](images)  # warm-up
        for _ in range(args.repeats):
            for name in variants:
                with patched(name):
                    start = time.perf_counter()
                    runners[name](images)
                    times[name].append(time.perf_counter() - start)
    for name in variants:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:8s} best {min(times[name]):.2f} s  (runs: {runs})")


if __name__ == "__main__":
    main()
