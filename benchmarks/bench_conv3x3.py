"""The DPT heads' 3x3 convolutions one by one: direct (oneDNN), channels-last, and Winograd.

Every 3x3 stride-1 layer shape of a ViT-L/512 head on one 512x384 view, one image per call,
best of ``--repeats`` after a warm-up. This is what set ``dpt.WINOGRAD_MIN_PIXELS``.

    PYTHONPATH=src python benchmarks/bench_conv3x3.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import best_seconds

from aetherscan.models.dpt import WINOGRAD_MIN_PIXELS, winograd_available

# (in channels, out channels, height, width, how many per head)
HEAD_LAYERS = [
    (96, 256, 96, 128, 1),  # layer1_rn
    (192, 256, 48, 64, 1),  # layer2_rn
    (384, 256, 24, 32, 1),  # layer3_rn
    (768, 256, 12, 16, 1),  # layer4_rn
    (256, 256, 12, 16, 2),  # refinenet4
    (256, 256, 24, 32, 4),  # refinenet3
    (256, 256, 48, 64, 4),  # refinenet2
    (256, 256, 96, 128, 4),  # refinenet1
    (256, 128, 192, 256, 1),  # head.0
    (128, 128, 384, 512, 1),  # head.2
]


def winograd(x, weight, bias):
    return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1], [1, 1])


def time_layer(c_in: int, c_out: int, h: int, w: int, repeats: int) -> tuple[float, ...]:
    """(direct ms, channels-last ms, Winograd ms, Winograd's max error / max output)."""
    x = torch.randn(1, c_in, h, w)
    weight = torch.randn(c_out, c_in, 3, 3) * (2 / (9 * c_in)) ** 0.5
    bias = torch.randn(c_out)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w_cl = weight.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        direct = 1e3 * best_seconds(lambda: F.conv2d(x, weight, bias, padding=1), repeats)
        last = 1e3 * best_seconds(lambda: F.conv2d(x_cl, w_cl, bias, padding=1), repeats)
        fast = 1e3 * best_seconds(lambda: winograd(x, weight, bias), repeats)
        ref = F.conv2d(x, weight, bias, padding=1)
        error = float((winograd(x, weight, bias) - ref).abs().max() / ref.abs().max())
    return direct, last, fast, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not winograd_available():
        raise SystemExit("this PyTorch build has no NNPACK")
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}, ms")
    print(f"{'layer':>22} {'direct':>8} {'ch-last':>8} {'winograd':>8} {'max rel err':>11}")
    totals = {"direct": 0.0, "picked": 0.0}
    for c_in, c_out, h, w, count in HEAD_LAYERS:
        direct, last, fast, error = time_layer(c_in, c_out, h, w, args.repeats)
        name = f"{c_in}->{c_out} {h}x{w}"
        print(f"{name:>22} {direct:8.1f} {last:8.1f} {fast:8.1f} {error:11.1e}")
        totals["direct"] += count * direct
        totals["picked"] += count * (fast if h * w >= WINOGRAD_MIN_PIXELS else direct)
    print(
        f"one head, one view: direct {totals['direct']:.0f} ms, as the model picks "
        f"(Winograd from {WINOGRAD_MIN_PIXELS} pixels) {totals['picked']:.0f} ms"
    )


if __name__ == "__main__":
    main()
