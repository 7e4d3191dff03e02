"""Peak memory of a Fast3R job, predicted before it runs, and the plan that keeps it in budget.

A forward pass (``Fast3R._run``) goes through five stages, and the job's peak is the largest of
their peaks. Each stage holds what earlier stages left for later ones plus its own transient
tensors:

    encoder      chunks of ``encoder_chunk_images`` views through the ViT; tokens accumulate
    fusion       all views' tokens through the fusion blocks; stages 0, L/2, 3L/4, L are kept
    heads        the kept stages gathered per view shape, then each head runs chunks of
                 ``head_chunk_views`` views; its largest tensors are the full-resolution maps
    outputs      raw head maps turned into points and confidences (kept for every view)
    post         the engine's cameras and points from the outputs, on the host, per view

Each part is counted from the architecture (tokens, widths, MLP ratio, DPT widths, dtype
bytes), then scaled by a few coefficients fitted by least squares to peaks measured on the CPU
(``benchmarks/bench_fast3r_memory.py``). The GPU coefficients are first principles only, not yet
checked against a measurement (see docs/benchmarks.md).

Dimension letters: V views, N tokens of one view, T = sum of N over views, C channels, r MLP
ratio, H, W pixels of one view, h = H / patch, w = W / patch, F and F_last the DPT widths.
Memory is in bytes; GiB = 2**30 bytes.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aetherscan.models.fast3r import Fast3RConfig

GIB = 2**30
ENCODER_CHUNK_IMAGES = 16  # Fast3R.encoder_chunk_images
HEAD_CHUNK_LADDER = (8, 4, 2, 1)  # head chunks tried, largest first
MAX_VIEWS = 1000  # rows of the image-index table
MARGIN = 0.10  # share of the available memory a plan leaves free
DEFAULT_CUDA_MEMORY_GIB = 80.0  # an "80GB" A100/H100 holds 80 GiB (81,920 MiB on an A100)
DTYPES = ("auto", "fp32", "bf16", "fp16", "int8")

# Model input of a 4:3 landscape photo per image size (models/preprocess.py).
LANDSCAPE_SHAPES = {512: (384, 512), 384: (288, 384), 224: (224, 224)}


@dataclass(frozen=True)
class Coefficients:
    """Factors between the counted bytes and the memory measured; see the module docstring."""

    kept: float  # tensors held from one stage to the next (tokens, stages, outputs)
    encoder_block: float  # one encoder block's tensors for one chunk of images
    fusion_block: float  # one fusion block's tensors for all views
    head_per_view: float  # a head's tensors per view of its chunk
    head_fixed: float  # a head's tensors once per chunk (the Winograd path's workspace)
    overhead_bytes: float  # a pass's fixed cost: thread pools, kernel caches, allocator slack
    carried: float  # share of the largest earlier stage's tensors the allocator still holds
    fitted: bool  # False: first principles, not checked against a measurement


# Fitted by `PYTHONPATH=src python benchmarks/bench_fast3r_memory.py --fit` on the 2-core
# development machine, CPU fp32, 10 points (docs/benchmarks.md, "Fast3R memory planner").
# The heads' factor above 1 is NNPACK's Winograd workspace and the chunk's concatenation;
# why kept comes out near one half was not pinned down; the held-out error vouches for the whole.
CPU_COEFFICIENTS = Coefficients(
    kept=0.502,
    encoder_block=0.735,
    fusion_block=0.766,
    head_per_view=1.668,
    head_fixed=0.675,
    overhead_bytes=215.5e6,
    carried=0.659,
    fitted=True,
)
# Not fitted: every tensor counted once, plus the CUDA context and cuBLAS/cuDNN workspaces.
CUDA_COEFFICIENTS = Coefficients(
    kept=1.0,
    encoder_block=1.0,
    fusion_block=1.0,
    head_per_view=1.0,
    head_fixed=0.0,
    overhead_bytes=1.0 * GIB,
    carried=0.0,
    fitted=False,
)

# The engine's post-processing per pixel on the host (engines/fast3r.py): while PnP runs, per
# worker thread a pixel grid (int64 x 2), pixel coordinates (float64 x 2), the masked points and
# pixels, and their float64 copies in solve_pnp; then per view the alignment's float64 copies;
# kept per view: depth and confidence maps (float32) and at most 10,000 points.
# Resident bytes per Linear weight after dynamic int8 quantisation (models/int8.py): FBGEMM's
# packed int8 matrix and what glibc keeps of the freed float32 weights. Measured on ViT-L:
# 1037 MiB resident after quantising and a garbage collection, against 2556 MiB in float32.
INT8_BYTES_PER_WEIGHT = 1.37
POST_WORKER_BYTES_PER_PX = 100
POST_VIEW_BYTES_PER_PX = 150
POST_KEPT_BYTES_PER_PX = 8
POST_KEPT_BYTES_PER_VIEW = 10_000 * (12 + 3 + 4)


# ---------------------------------------------------------------------------------- counting


def parameter_count(config: Fast3RConfig) -> dict[str, int]:
    """Parameters of the model by kind: ``linear`` (transformer nn.Linear weights, what int8
    converts), ``conv`` (convolution weights), ``other`` (biases, norms, the index table)."""
    enc, dec, dpt = config.encoder, config.decoder, config.dpt
    counts = {"linear": 0, "conv": 0, "other": 0}

    def block(dim: int, mlp_ratio: float, qkv_bias: bool) -> None:
        hidden = int(dim * mlp_ratio)
        counts["linear"] += 3 * dim * dim + dim * dim + 2 * dim * hidden
        counts["other"] += (3 * dim if qkv_bias else 0) + dim + hidden + dim + 4 * dim

    def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> None:
        counts["conv"] += c_in * c_out * k * k
        counts["other"] += c_out if bias else 0

    conv(3, enc.embed_dim, enc.patch_size)
    for _ in range(enc.depth):
        block(enc.embed_dim, enc.mlp_ratio, True)
    counts["linear"] += enc.embed_dim * dec.embed_dim
    counts["other"] += 2 * enc.embed_dim + dec.embed_dim + 2 * dec.embed_dim
    for _ in range(dec.depth):
        block(dec.embed_dim, dec.mlp_ratio, dec.qkv_bias)
    counts["other"] += 1000 * dec.embed_dim  # image-index table (a buffer, float32)

    tokens = (enc.embed_dim, dec.embed_dim, dec.embed_dim, dec.embed_dim)
    d0, d1, d2, d3 = dpt.layer_dims
    feature, last = dpt.feature_dim, dpt.last_dim
    heads = 2 if config.head.with_local_head else 1
    for _ in range(heads):
        for c_tok, d in zip(tokens, dpt.layer_dims, strict=True):
            conv(c_tok, d, 1)
        conv(d0, d0, 4)  # ConvTranspose2d x4
        conv(d1, d1, 2)  # ConvTranspose2d x2
        conv(d3, d3, 3)  # stride-2 conv
        for d in (d0, d1, d2, d3):
            conv(d, feature, 3, bias=False)
        for _ in range(4):  # fusion blocks: 2 residual units of 2 convs, a 1x1 out conv
            for _ in range(4):
                conv(feature, feature, 3)
            conv(feature, feature, 1)
        conv(feature, feature // 2, 3)
        conv(feature // 2, last, 3)
        conv(last, 4, 1)
    return counts


def view_shapes(views: int, image_size: int) -> list[tuple[int, int]]:
    """(H, W) model inputs of ``views`` 4:3 landscape photos at ``image_size`` (512, 384, 224)."""
    if image_size not in LANDSCAPE_SHAPES:
        raise ValueError(f"image_size must be one of {sorted(LANDSCAPE_SHAPES)}, got {image_size}")
    return [LANDSCAPE_SHAPES[image_size]] * views


def resolve_dtype(dtype: str, device_type: str) -> str:
    """The engine's dtype names: auto is bf16 on CUDA and fp32 on the CPU; int8 is CPU only."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if dtype == "int8" and device_type != "cpu":
        raise ValueError("dtype int8 is a CPU mode; on a GPU use bf16 or fp16")
    return dtype


@dataclass(frozen=True)
class MemoryEstimate:
    """A predicted peak: ``parts`` are what is alive at the peak, in bytes, and sum to it."""

    peak_bytes: int
    peak_stage: str
    parts: dict[str, int]
    stages: dict[str, int]  # the peak of each stage
    resident_weight_bytes: int  # the weights as they sit in memory before the job starts
    host_bytes: int  # CUDA: the outputs copied to the host and the post-processing there; else 0
    fitted: bool


def predict_peak(
    config: Fast3RConfig,
    shapes: Sequence[tuple[int, int]],
    dtype: str,
    head_chunk_views: int,
    device_type: str,
    *,
    encoder_chunk_images: int = ENCODER_CHUNK_IMAGES,
    post_workers: int | None = None,
    coefficients: Coefficients | None = None,
) -> MemoryEstimate:
    """The peak memory of one Fast3R job on ``device_type`` ("cpu" or "cuda").

    ``shapes``: the model input (H, W) of each view (``view_shapes`` for 4:3 photos).
    ``dtype``: the engine's name (``resolve_dtype``). ``post_workers``: the engine's PnP threads
    (default: min(8, CPU cores, views)).
    """
    if len(shapes) == 0:
        raise ValueError("expected the (H, W) of at least one view")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    if head_chunk_views < 1:
        raise ValueError(f"head_chunk_views must be at least 1, got {head_chunk_views}")
    dtype = resolve_dtype(dtype, device_type)
    coef = coefficients or (CUDA_COEFFICIENTS if device_type == "cuda" else CPU_COEFFICIENTS)
    enc, dec, dpt = config.encoder, config.decoder, config.dpt
    patch = enc.patch_size
    for H, W in shapes:
        if H % patch or W % patch or H <= 0 or W <= 0:
            raise ValueError(f"view shape {H}x{W} is not a positive multiple of the patch {patch}")

    # Bytes per element: autocast computes in 16 bits but LayerNorm outputs stay float32, so the
    # encoder tokens and the last fusion stage are float32 whatever the dtype.
    act = 2 if dtype in ("bf16", "fp16") else 4
    f32 = 4
    params = parameter_count(config)
    if dtype == "int8":
        resident = int(INT8_BYTES_PER_WEIGHT * params["linear"]) + 4 * (
            params["conv"] + params["other"]
        )
    else:
        resident = 4 * sum(params.values())
    # Autocast caches a 16-bit copy of every matmul and convolution weight during the pass.
    copies = 2 * (params["linear"] + params["conv"]) if act == 2 else 0

    groups: dict[tuple[int, int], int] = {}
    for shape in shapes:
        groups[shape] = groups.get(shape, 0) + 1
    tokens = {s: (s[0] // patch) * (s[1] // patch) for s in groups}
    T = sum(n * tokens[s] for s, n in groups.items())
    pixels = sum(n * s[0] * s[1] for s, n in groups.items())
    last_group = list(groups)[-1]
    T_last = groups[last_group] * tokens[last_group]
    C_e, C_d = enc.embed_dim, dec.embed_dim
    k = coef.kept

    inputs = 2 * 3 * pixels * 4  # the views, and their stack per shape
    # Encoder output per shape group: the chunks (kept by _run until it returns) and their cat.
    enc_tokens = (T + T_last) * C_e * f32
    fusion_in = T * C_e * f32  # stage 0: all views' tokens concatenated
    fusion_mid = 2 * T * C_d * act  # stages L/2 and 3L/4
    fusion_out = T * C_d * f32  # stage L, after the final LayerNorm
    layers = max(n * tokens[s] for s, n in groups.items()) * (C_e * f32 + 3 * C_d * act)
    raw = 2 * 4 * pixels * act if config.head.with_local_head else 4 * pixels * act
    heads = 2 if config.head.with_local_head else 1
    preds = heads * 4 * pixels * f32

    def block_tokens(cfg_dim: int, mlp_ratio: float) -> float:
        # Inside a block: the caller's input, the residual sum, the normed input and the MLP's
        # two hidden tensors; attention (q k v and RoPE copies) peaks about as high.
        return (3 + 2 * mlp_ratio) * cfg_dim * act

    encoder_block = max(
        min(n, encoder_chunk_images) * tokens[s] for s, n in groups.items()
    ) * block_tokens(C_e, enc.mlp_ratio)
    fusion_block = T * block_tokens(C_d, dec.mlp_ratio)

    feature, last = dpt.feature_dim, dpt.last_dim

    def head_px(shape: tuple[int, int]) -> float:
        # At the head's last convolution: its upsampled input (F/2) and output (F_last) at full
        # resolution, with the fused path (F at H/2) and the four scales (21.25 F per token).
        H, W = shape
        hw = tokens[shape]
        return (H * W * (feature / 2 + feature / 4 + last) + 21.25 * feature * hw) * act

    winograd = device_type == "cpu" and act == 4
    head_views = {s: min(head_chunk_views, n) for s, n in groups.items()}
    head_chunk = max(
        (coef.head_per_view * head_views[s] + coef.head_fixed * winograd) * head_px(s)
        for s in groups
    )

    base = {"weights": resident, "inputs": inputs}
    encoder = {**base, "weight copies": copies, "encoder": k * enc_tokens}
    kept_fusion = {**encoder, "encoder": k * (enc_tokens + fusion_in)}
    fusion = {**kept_fusion, "fusion": k * (fusion_mid + fusion_out)}
    heads_stage = {**fusion, "heads": k * layers, "outputs": k * 1.5 * raw}
    outputs_stage = {**fusion, "heads": k * layers, "outputs": k * (raw + preds)}

    workers = post_workers or max(1, min(8, os.cpu_count() or 1, len(shapes)))
    largest_px = max(s[0] * s[1] for s in groups)
    post_scratch = (
        workers * POST_WORKER_BYTES_PER_PX * largest_px + POST_VIEW_BYTES_PER_PX * largest_px
    )
    post_kept = POST_KEPT_BYTES_PER_PX * pixels + POST_KEPT_BYTES_PER_VIEW * len(shapes)

    post = {**base, "outputs": k * preds, "post-processing": post_scratch + post_kept}
    # Per stage: what is alive from before, the part its own tensors go to, their bytes as
    # scaled and as counted (the allocator's slack follows the counted ones).
    timeline: list[tuple[str, dict[str, float], str, float, float]] = [
        ("encoder", encoder, "encoder", coef.encoder_block * encoder_block, encoder_block),
        (
            "fusion",
            {**kept_fusion, "fusion": k * fusion_mid},
            "fusion",
            coef.fusion_block * fusion_block,
            fusion_block,
        ),
        (
            "heads",
            heads_stage,
            "heads",
            head_chunk,
            max(head_views[s] * head_px(s) for s in groups),
        ),
        ("outputs", outputs_stage, "outputs", 0.0, 0.0),
    ]
    host = 0
    if device_type == "cuda":
        host = int(preds + post_scratch + post_kept)
    else:
        timeline.append(("post-processing", post, "post-processing", 0.0, 0.0))

    stages: dict[str, dict[str, int]] = {}
    largest_before = 0.0  # the largest transient of the stages so far, as counted
    for name, kept, transient, value, counted in timeline:
        parts = {key: int(v) for key, v in kept.items()}
        parts[transient] = parts.get(transient, 0) + int(value)
        parts["allocator slack"] = int(coef.carried * largest_before)
        parts["overhead"] = int(coef.overhead_bytes)
        stages[name] = parts
        largest_before = max(largest_before, counted)

    totals = {name: sum(parts.values()) for name, parts in stages.items()}
    peak_stage = max(totals, key=totals.__getitem__)
    return MemoryEstimate(
        peak_bytes=totals[peak_stage],
        peak_stage=peak_stage,
        parts={part: v for part, v in stages[peak_stage].items() if v},
        stages=totals,
        resident_weight_bytes=resident,
        host_bytes=host,
        fitted=coef.fitted and dtype in ("fp32", "int8") and device_type == "cpu",
    )


# ---------------------------------------------------------------------------------- budget


def available_memory(device: str, memory_bytes: int | None = None) -> tuple[int, str]:
    """Bytes free for a job on ``device`` ("cpu", "cuda", "cuda:N") and where the figure came from.

    ``memory_bytes`` wins when given. The CPU: MemAvailable of /proc/meminfo, lowered to the
    cgroup's limit when one is set (containers). CUDA: ``torch.cuda.mem_get_info`` when the GPU is
    present, else ``DEFAULT_CUDA_MEMORY_GIB`` (a GPU need not be present to plan for one).
    """
    if memory_bytes is not None:
        return int(memory_bytes), "given"
    if torch.device(device).type == "cuda":
        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info(torch.device(device))
            return int(free), "free on the GPU, torch.cuda.mem_get_info"
        return int(DEFAULT_CUDA_MEMORY_GIB * GIB), f"default {DEFAULT_CUDA_MEMORY_GIB:g} GiB GPU"
    free, source = _mem_available()
    limit = _cgroup_room()
    if limit is not None and limit < free:
        return limit, "room under the cgroup's memory limit"
    return free, source


def _mem_available() -> tuple[int, str]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages), "free pages, sysconf"


def _cgroup_room() -> int | None:
    """cgroup v2 memory.max minus memory.current, None when unlimited or not readable."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        current = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - current)


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class MemoryPlan:
    """A job's plan: the head chunk chosen, the predicted peak, and whether it fits."""

    device: str
    dtype: str  # resolved: fp32, bf16, fp16 or int8
    shapes: tuple[tuple[int, int], ...]
    encoder_chunk_images: int
    head_chunk_views: int  # the largest of the ladder that fits (1 when none does)
    estimate: MemoryEstimate
    available_bytes: int
    memory_source: str
    weights_loaded: bool  # the weights are already in memory, so not in available_bytes
    fits: bool
    fitting_views: dict[int, int] = field(default_factory=dict)  # image side -> most views

    @property
    def budget_bytes(self) -> int:
        """What the plan may use: the available memory less the margin."""
        return int(self.available_bytes * (1 - MARGIN))

    @property
    def required_bytes(self) -> int:
        """The predicted peak less what is already in memory."""
        loaded = self.estimate.resident_weight_bytes if self.weights_loaded else 0
        return self.estimate.peak_bytes - loaded

    def sentence(self) -> str:
        """One sentence on whether the job fits; when it does not, how many views would."""
        H, W = _largest(self.shapes)
        job = (
            f"{len(self.shapes)} views of {W}x{H} in {self.dtype} on {self.device} "
            f"(head chunk {self.head_chunk_views})"
        )
        need = f"{self.required_bytes / GIB:.1f} GiB"
        budget = (
            f"{self.budget_bytes / GIB:.1f} GiB ({100 * (1 - MARGIN):.0f} % of the "
            f"{self.available_bytes / GIB:.1f} GiB available)"
        )
        if self.fits:
            return f"{job} need about {need} at the peak, within {budget}."
        counts = [
            f"{_views_text(n)} at {side}"
            for side, n in self.fitting_views.items()
            if side != max(H, W)
        ]
        here = self.fitting_views.get(max(H, W), 0)
        if here < 2:
            here_text = "not even 2 views fit at this size"
        else:
            here_text = f"at most {_views_text(here)} views fit at this size"
        others = f", {' and '.join(counts)}" if counts else ""
        return (
            f"Fast3R cannot run {job}: it would need about {need} at the peak, but only "
            f"{budget} can be planned for; {here_text}{others}."
        )

    def report(self) -> str:
        """The plan as lines for people: the peak and its parts, the chunks, the verdict."""
        est = self.estimate
        how = (
            "fitted to CPU measurements"
            if est.fitted
            else "first principles, not yet checked against a measurement"
        )
        lines = [
            f"predicted peak: {est.peak_bytes / GIB:.2f} GiB during the {est.peak_stage} "
            f"({how}); at the peak:"
        ]
        lines += [f"  {name:16s} {value / GIB:7.2f} GiB" for name, value in est.parts.items()]
        lines.append(
            "stage peaks: "
            + ", ".join(f"{name} {value / GIB:.2f}" for name, value in est.stages.items())
            + " GiB"
        )
        if est.host_bytes:
            lines.append(
                f"host memory for outputs and post-processing: {est.host_bytes / GIB:.2f} GiB"
            )
        lines.append(
            f"chunks: {self.encoder_chunk_images} images per encoder batch, "
            f"{self.head_chunk_views} view{'s' if self.head_chunk_views > 1 else ''} per head chunk"
        )
        lines.append(f"memory: {self.available_bytes / GIB:.1f} GiB ({self.memory_source})")
        lines.append(("fits: " if self.fits else "does not fit: ") + self.sentence())
        return "\n".join(lines)


def _views_text(count: int) -> str:
    return f"{count} (all that Fast3R takes)" if count >= MAX_VIEWS else str(count)


def _largest(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    return max(shapes, key=lambda s: s[0] * s[1])


def _shape_at(side: int, like: tuple[int, int]) -> tuple[int, int]:
    """The model input at image size ``side`` of a photo shaped like ``like`` (H, W)."""
    H, W = like
    if side == 224:
        return (224, 224)
    if W >= H:
        return ((side * H // W) // 16 * 16, side)
    return (side, (side * W // H) // 16 * 16)


def max_views(
    config: Fast3RConfig,
    shape: tuple[int, int],
    dtype: str,
    device_type: str,
    budget_bytes: int,
    *,
    weights_loaded: bool = False,
    coefficients: Coefficients | None = None,
) -> int:
    """The most views of ``shape`` (H, W) whose smallest plan (head chunk 1) fits
    ``budget_bytes``; 0 when not even one does. At most ``MAX_VIEWS``."""

    def needed(views: int) -> int:
        est = predict_peak(
            config, [shape] * views, dtype, 1, device_type, coefficients=coefficients
        )
        return est.peak_bytes - (est.resident_weight_bytes if weights_loaded else 0)

    # The peak grows with the views, so the first count that does not fit is found by bisection.
    first_over = bisect.bisect_left(
        range(1, MAX_VIEWS + 1), True, key=lambda v: needed(v) > budget_bytes
    )
    return first_over


def plan_memory(
    config: Fast3RConfig,
    shapes: Sequence[tuple[int, int]],
    dtype: str,
    device: str,
    *,
    memory_bytes: int | None = None,
    weights_loaded: bool = False,
    freed_bytes: int = 0,
    coefficients: Coefficients | None = None,
) -> MemoryPlan:
    """Plan a job of views shaped ``shapes`` (H, W each, the model inputs) on ``device``.

    Picks the largest head chunk of ``HEAD_CHUNK_LADDER`` whose peak fits the budget, starting
    from the engine's default (1 on the CPU, where batches gain nothing; 8 on a GPU).
    ``weights_loaded``: the model is already in memory (the engine plans after loading it), so
    its weights are not counted against ``memory_bytes`` or the memory found free.
    ``freed_bytes``: memory in use now that the job will find free (the job running before it).
    """
    device_type = torch.device(device).type
    resolved = resolve_dtype(dtype, device_type)
    available, source = available_memory(device, memory_bytes)
    if freed_bytes:
        available += freed_bytes
        source += f", and {freed_bytes / GIB:.1f} GiB that the job before it holds"
    budget = int(available * (1 - MARGIN))
    preferred = 1 if device_type == "cpu" else HEAD_CHUNK_LADDER[0]
    ladder = [c for c in HEAD_CHUNK_LADDER if c <= preferred]

    def plan(chunk: int, fits: bool, estimate: MemoryEstimate) -> MemoryPlan:
        return MemoryPlan(
            device=device,
            dtype=resolved,
            shapes=tuple((int(h), int(w)) for h, w in shapes),
            encoder_chunk_images=ENCODER_CHUNK_IMAGES,
            head_chunk_views=chunk,
            estimate=estimate,
            available_bytes=available,
            memory_source=source,
            weights_loaded=weights_loaded,
            fits=fits,
            fitting_views=fitting,
        )

    fitting: dict[int, int] = {}
    for chunk in ladder:
        estimate = predict_peak(
            config, shapes, resolved, chunk, device_type, coefficients=coefficients
        )
        candidate = plan(chunk, True, estimate)
        if candidate.required_bytes <= budget:
            return candidate
    like = _largest(shapes)
    sides = [max(like)] + [s for s in (384, 224) if s < max(like)]
    for side in sides:
        shape = like if side == max(like) else _shape_at(side, like)
        fitting[side] = max_views(
            config,
            shape,
            resolved,
            device_type,
            budget,
            weights_loaded=weights_loaded,
            coefficients=coefficients,
        )
    return plan(ladder[-1], False, estimate)
