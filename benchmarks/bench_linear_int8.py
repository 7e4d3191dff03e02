"""The transformer's Linear layers for 2 views (1536 tokens): fp32 (MKL) against dynamic int8
(FBGEMM, as ``--dtype int8`` runs them), on the same inputs, best of ``--repeats``.

    PYTHONPATH=src python benchmarks/bench_linear_int8.py
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F
from timing import best_seconds
from torch import nn

# (in features, out features, name) of one ViT-L block
SHAPES = [(1024, 3072, "qkv"), (1024, 1024, "proj"), (1024, 4096, "fc1"), (4096, 1024, "fc2")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.tokens} tokens, {args.threads} threads")
    totals = {"fp32": 0.0, "int8": 0.0}
    for c_in, c_out, name in SHAPES:
        linear = nn.Linear(c_in, c_out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the eager quantisation API is marked deprecated
            (quantized,) = torch.ao.quantization.quantize_dynamic(
                nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8
            )
        x = torch.randn(args.tokens, c_in)
        with torch.inference_mode():
            fp32 = best_seconds(lambda: F.linear(x, linear.weight, linear.bias), args.repeats)  # noqa: B023
            int8 = best_seconds(lambda: quantized(x), args.repeats)  # noqa: B023
        ops = 2 * args.tokens * c_in * c_out
        totals["fp32"] += fp32
        totals["int8"] += int8
        print(
            f"{name:5s} {c_in}->{c_out}: fp32 {fp32 * 1e3:6.1f} ms ({ops / fp32 / 1e9:4.0f} GFLOP/s)"
            f", int8 {int8 * 1e3:6.1f} ms ({ops / int8 / 1e9:4.0f} GOP/s), {fp32 / int8:.2f}x"
        )
    print(f"one block's linears: int8 {totals['fp32'] / totals['int8']:.2f}x faster than fp32")


if __name__ == "__main__":
    main()
