"""Attention on the CPU: SDPA's flash kernel against softmax(q k^T) v chunked over queries, and
PyTorch's int8 matmul (the candidate for an int8 attention).

The fusion transformer's shapes (16 heads of 64) at the token counts of 2 and 8 views of
512x384; best of 2 after a warm-up, GFLOP/s counting 4 N^2 d per head.

    PYTHONPATH=src python benchmarks/bench_attention.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import best_seconds

HEADS, HEAD_DIM = 16, 64


def chunked_attention(q, k, v, chunk: int = 256):
    """softmax(q k^T / sqrt(d)) v one head and ``chunk`` queries at a time, with MKL matmuls."""
    out = torch.empty_like(q)  # (1, h, N, d)
    for h in range(q.shape[1]):
        keys = k[0, h].T * q.shape[-1] ** -0.5  # (d, N)
        for s in range(0, q.shape[2], chunk):
            weights = torch.mm(q[0, h, s : s + chunk], keys)  # (chunk, N)
            torch.softmax(weights, dim=-1, out=weights)
            torch.mm(weights, v[0, h], out=out[0, h, s : s + chunk])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1536,6144")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for n in (int(t) for t in args.tokens.split(",")):
        q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM) for _ in range(3))
        flop = 4 * HEADS * n * n * HEAD_DIM
        with torch.inference_mode():
            sdpa = best_seconds(lambda: F.scaled_dot_product_attention(q, k, v), 2)  # noqa: B023
            plain = best_seconds(lambda: chunked_attention(q, k, v), 2)  # noqa: B023
            error = (chunked_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs()
        print(
            f"{n} tokens: SDPA {sdpa:.3f} s ({flop / sdpa / 1e9:.0f} GFLOP/s), "
            f"chunked {plain:.3f} s ({flop / plain / 1e9:.0f} GFLOP/s), max diff {error.max():.1e}"
        )
    print(f"torch._int_mm, one head's q k^T in int8 at 1536 tokens: {int_mm_rate():.1f} GOP/s")


def int_mm_rate(n: int = 1536) -> float:
    """GOP/s of PyTorch's int8 matmul for one head's q k^T (n x 64 by 64 x n)."""
    q = torch.randint(-127, 128, (n, HEAD_DIM), dtype=torch.int8)
    k_t = torch.randint(-127, 128, (HEAD_DIM, n), dtype=torch.int8)
    return 2 * n * n * HEAD_DIM / best_seconds(lambda: torch._int_mm(q, k_t), 2) / 1e9


if __name__ == "__main__":
    main()
