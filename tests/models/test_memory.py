"""The memory planner: its counts, its choices, its refusals, and one measured peak."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from aetherscan.cli import main
from aetherscan.models.fast3r import Fast3R, Fast3RConfig, fast3r_vitl_512_config
from aetherscan.models.memory import (
    DEFAULT_CUDA_MEMORY_GIB,
    GIB,
    MARGIN,
    available_memory,
    max_views,
    parameter_count,
    plan_memory,
    predict_peak,
    view_shapes,
)

VITL = fast3r_vitl_512_config()
# How far a measured CPU peak may be from the prediction in the measuring test: the planner's
# held-out error was at most 6 % (docs/benchmarks.md); this leaves room for another machine's
# allocator and libraries.
MEASURED_TOLERANCE = 0.15


def peak(views: int = 8, size: int = 512, chunk: int = 1, device: str = "cpu", dtype="fp32"):
    return predict_peak(VITL, view_shapes(views, size), dtype, chunk, device).peak_bytes


def test_parameter_count_is_the_models(fast3r_reference: Path) -> None:
    tiny = Fast3RConfig.from_dict(json.loads((fast3r_reference / "tiny_config.json").read_text()))
    for config in (VITL, tiny):
        with torch.device("meta"):
            model = Fast3R(config)
        tensors = [*model.parameters(), *model.buffers()]
        assert sum(parameter_count(config).values()) == sum(t.numel() for t in tensors)


@pytest.mark.parametrize("device, dtype", [("cpu", "fp32"), ("cpu", "int8"), ("cuda", "bf16")])
def test_more_views_bigger_images_and_larger_chunks_need_more(device: str, dtype: str) -> None:
    assert peak(8, device=device, dtype=dtype) < peak(16, device=device, dtype=dtype)
    assert peak(16, device=device, dtype=dtype) < peak(64, device=device, dtype=dtype)
    assert peak(8, 224, device=device, dtype=dtype) < peak(8, 384, device=device, dtype=dtype)
    assert peak(8, 384, device=device, dtype=dtype) < peak(8, 512, device=device, dtype=dtype)
    assert peak(8, chunk=1, device=device, dtype=dtype) < peak(
        8, chunk=4, device=device, dtype=dtype
    )


def test_estimate_parts_sum_to_the_peak_and_name_the_weights() -> None:
    estimate = predict_peak(VITL, view_shapes(8, 512), "fp32", 1, "cpu")
    assert sum(estimate.parts.values()) == estimate.peak_bytes == max(estimate.stages.values())
    assert estimate.parts["weights"] == estimate.resident_weight_bytes == 4 * 648_575_368
    bf16 = predict_peak(VITL, view_shapes(8, 512), "bf16", 8, "cuda")
    assert bf16.parts["weight copies"] > 0  # autocast's 16-bit copies
    int8 = predict_peak(VITL, view_shapes(8, 512), "int8", 1, "cpu")
    assert int8.resident_weight_bytes < estimate.resident_weight_bytes / 1.5


def test_plan_takes_smaller_head_chunks_as_the_budget_shrinks() -> None:
    shapes = view_shapes(16, 512)  # few enough views for the heads to set the peak
    needs = {c: predict_peak(VITL, shapes, "bf16", c, "cuda").peak_bytes for c in (8, 4, 2, 1)}
    assert needs[8] > needs[4] > needs[2] > needs[1]
    for chunk, need in needs.items():
        plan = plan_memory(VITL, shapes, "bf16", "cuda", memory_bytes=int(need / (1 - MARGIN)) + 1)
        assert plan.fits and plan.head_chunk_views == chunk
    short = plan_memory(VITL, shapes, "bf16", "cuda", memory_bytes=int(needs[1] / (1 - MARGIN)) - 1)
    assert not short.fits and short.head_chunk_views == 1


def test_cpu_plans_one_view_per_head_chunk() -> None:
    plan = plan_memory(VITL, view_shapes(4, 224), "auto", "cpu", memory_bytes=100 * GIB)
    assert plan.fits and plan.head_chunk_views == 1 and plan.dtype == "fp32"


def test_refusal_names_view_counts_that_fit_and_one_more_does_not() -> None:
    memory = 12 * GIB
    plan = plan_memory(VITL, view_shapes(400, 512), "bf16", "cuda", memory_bytes=memory)
    assert not plan.fits
    sentence = plan.sentence()
    assert set(plan.fitting_views) == {512, 384, 224}
    assert f"at most {plan.fitting_views[512]} views fit at this size" in sentence
    assert f"{plan.fitting_views[384]} at 384" in sentence
    assert f"{plan.fitting_views[224]} at 224" in sentence
    assert re.search(r"need about [\d.]+ GiB at the peak, but only [\d.]+ GiB", sentence)
    for side, count in plan.fitting_views.items():
        assert 2 <= count < 1000
        fits = plan_memory(VITL, view_shapes(count, side), "bf16", "cuda", memory_bytes=memory)
        over = plan_memory(VITL, view_shapes(count + 1, side), "bf16", "cuda", memory_bytes=memory)
        assert fits.fits and not over.fits


def test_loaded_weights_are_not_counted_against_the_free_memory() -> None:
    shapes = view_shapes(30, 512)
    cold = plan_memory(VITL, shapes, "fp32", "cpu", memory_bytes=8 * GIB)
    warm = plan_memory(VITL, shapes, "fp32", "cpu", memory_bytes=8 * GIB, weights_loaded=True)
    assert cold.required_bytes - warm.required_bytes == cold.estimate.resident_weight_bytes
    budget = 8 * GIB * (1 - MARGIN)
    assert max_views(VITL, (384, 512), "fp32", "cpu", budget, weights_loaded=True) > max_views(
        VITL, (384, 512), "fp32", "cpu", budget
    )


def test_cuda_is_planned_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    given = plan_memory(VITL, view_shapes(32, 512), "auto", "cuda", memory_bytes=40 * GIB)
    assert given.available_bytes == 40 * GIB and given.dtype == "bf16"
    assert given.head_chunk_views == 8
    default = plan_memory(VITL, view_shapes(32, 512), "auto", "cuda:1")
    assert default.available_bytes == DEFAULT_CUDA_MEMORY_GIB * GIB
    assert "80 GiB" in default.memory_source


def test_cpu_memory_is_what_is_free() -> None:
    free, source = available_memory("cpu")
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024  # MemTotal
    assert 0 < free <= total and source


def test_bad_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match="int8 is a CPU mode"):
        plan_memory(VITL, view_shapes(2, 224), "int8", "cuda", memory_bytes=GIB)
    with pytest.raises(ValueError, match="unknown dtype"):
        predict_peak(VITL, view_shapes(2, 224), "fp64", 1, "cpu")


def test_predicted_peak_matches_a_measured_forward(benchmark_script) -> None:
    """A small model with the released DPT heads: forward and post-processing in a fresh
    process, its peak resident memory against the prediction (CPU, fp32)."""
    bench = benchmark_script("bench_fast3r_memory")
    point = bench.measure("small", 4, 224, "fp32", 2)
    measured = max(point["stages"].values())
    config = bench.configs()["small"]
    predicted = predict_peak(config, view_shapes(4, 224), "fp32", 2, "cpu").peak_bytes
    assert abs(predicted / measured - 1) < MEASURED_TOLERANCE, (predicted, measured)


# ---------------------------------------------------------------------------------- command


def test_plan_command_fits(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["plan", "--views", "32", "--device", "cuda", "--memory-gb", "80"])
    out = capsys.readouterr().out
    assert status == 0
    assert "predicted peak:" in out and "8 views per head chunk" in out
    assert "16 images per encoder batch" in out
    assert "fits: " in out and "released ViT-L/512" in out


def test_plan_command_refuses_with_the_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["plan", "--views", "900", "--device", "cuda", "--memory-gb", "16"])
    out = capsys.readouterr().out
    assert status == 1
    assert "does not fit: Fast3R cannot run 900 views of 512x384" in out
    assert "views fit at this size" in out and " at 224" in out


def test_plan_command_reads_a_local_config(
    tiny_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["plan", "--views", "4", "--device", "cpu", "--weights", str(tiny_weights)])
    out = capsys.readouterr().out
    assert status == 0 and f"config of {tiny_weights}" in out
    weights = re.search(r"weights\s+([\d.]+) GiB", out)
    assert weights is not None and float(weights[1]) < 0.01  # the tiny model, not ViT-L


def test_plan_command_says_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--views", "4", "--device", "cuda", "--dtype", "int8"]) == 2
    assert "int8 is a CPU mode" in capsys.readouterr().err
