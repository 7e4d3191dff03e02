"""Fast3R against the golden tensors of the original (tiny random model, fp32 CPU).

Every intermediate the reference recorded is compared: image ids, encoder tokens and positions,
all fusion stages, the raw DPT output of each head and the final pointmaps. Tolerance 1e-5
absolute (a faithful re-implementation is within 2e-6; typical bugs give 1e-3 or more).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aetherscan.models import Fast3R, dpt
from aetherscan.models.backbone import INFERENCE_ATTN_SCALE

ATOL = 1e-5
SEED = 1234  # the reference ran torch.manual_seed(1234) right before forward
OUTPUT_KEYS = ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local")


@pytest.fixture(scope="module")
def model(tiny_weights: Path) -> Fast3R:
    return Fast3R.from_pretrained(tiny_weights).eval()


def _views(ref: dict[str, np.ndarray], case: str) -> list[torch.Tensor]:
    count = sum(1 for k in ref if k.startswith(f"{case}_input_img_"))
    return [torch.from_numpy(ref[f"{case}_input_img_{i}"]) for i in range(count)]


def _run(model: Fast3R, ref: dict[str, np.ndarray], case: str, mode: str):
    ids = None if mode == "random_idx" else torch.arange(len(_views(ref, case)))
    torch.manual_seed(SEED)
    with torch.no_grad():
        return model.trace(_views(ref, case), ids)


def _close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    assert tuple(actual.shape) == expected.shape, what
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=ATOL, err_msg=what)


def _per_view(ref: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """The reference's per-call arrays split into one (1, ...) array per view."""
    calls = sorted(k for k in ref if k.startswith(prefix))
    return [view[None] for k in calls for view in ref[k]]


@pytest.mark.parametrize("mode", ["random_idx", "sequential_idx"])
@pytest.mark.parametrize("case", ["A", "B"])
def test_matches_reference(model: Fast3R, tiny_reference, case: str, mode: str) -> None:
    ref = tiny_reference
    p = f"{case}_{mode}_"
    trace = _run(model, ref, case, mode)
    num_views = len(_views(ref, case))

    np.testing.assert_array_equal(trace.image_ids.numpy(), ref[p + "image_ids"])

    if f"{p}enc_tokens" in ref:  # all views one shape: stored batched
        enc_tokens = list(ref[p + "enc_tokens"][:, None])
        enc_pos = list(ref[p + "enc_pos"])
    else:
        enc_tokens = [ref[f"{p}enc_tokens_{i}"] for i in range(num_views)]
        enc_pos = [ref[f"{p}enc_pos_{i}"][0] for i in range(num_views)]
    for i in range(num_views):
        _close(trace.enc_tokens[i], enc_tokens[i], f"encoder tokens of view {i}")
        np.testing.assert_array_equal(trace.enc_pos[i].numpy(), enc_pos[i])

    stages = sorted(k for k in ref if k.startswith(p + "dec_out_"))
    assert len(trace.fusion) == len(stages) == model.config.decoder.depth + 1
    for stage, key in zip(trace.fusion, stages, strict=True):
        _close(stage, ref[key], key)

    for head in ("global", "local"):
        expected = _per_view(ref, f"{p}dpt_{head}_raw_call")
        assert len(expected) == num_views
        for i in range(num_views):
            _close(trace.head_raw[head][i], expected[i], f"raw {head} DPT output of view {i}")

    for i in range(num_views):
        assert set(trace.preds[i]) == set(OUTPUT_KEYS)
        for key in OUTPUT_KEYS:
            _close(trace.preds[i][key], ref[f"{p}{key}_{i}"], f"{key} of view {i}")


def test_forward_returns_what_trace_computed(model: Fast3R, tiny_reference) -> None:
    views = _views(tiny_reference, "B")
    torch.manual_seed(SEED)
    with torch.no_grad():
        preds = model(views)
    expected = _run(model, tiny_reference, "B", "random_idx").preds
    for got, want in zip(preds, expected, strict=True):
        for key in OUTPUT_KEYS:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_chunking_and_batching_do_not_change_results(model: Fast3R, tiny_reference) -> None:
    """Head chunks of 8 views and encoder chunks of one image agree with the default pass."""
    views = _views(tiny_reference, "A")
    ids = torch.arange(len(views)) * 7
    with torch.no_grad():
        batched = model(views, ids)
        model.head_chunk_views, model.encoder_chunk_images = 8, 1
        try:
            chunked = model(views, ids)
        finally:
            model.head_chunk_views, model.encoder_chunk_images = None, 16
    for a, b in zip(batched, chunked, strict=True):
        for key in OUTPUT_KEYS:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=ATOL)


def test_reference_attention_path_matches(model: Fast3R, tiny_reference) -> None:
    ref = tiny_reference
    model.fused_attention = False
    try:
        trace = _run(model, ref, "A", "sequential_idx")
    finally:
        model.fused_attention = True
    for i in range(len(trace.preds)):
        for key in OUTPUT_KEYS:
            _close(trace.preds[i][key], ref[f"A_sequential_idx_{key}_{i}"], f"{key} {i}")


def test_direct_convolutions_match_reference(model: Fast3R, tiny_reference, nnpack_calls) -> None:
    """The heads' Winograd convolutions are on by default (the other tests run them: the last
    head convolution works on 48x64 maps here); the direct ones agree too."""
    ref = tiny_reference
    _run(model, ref, "B", "random_idx")
    assert model.winograd_convolutions
    assert len(nnpack_calls) == 3 * 2 or not dpt.winograd_available()  # 3 views, 2 heads
    nnpack_calls.clear()
    model.winograd_convolutions = False
    try:
        trace = _run(model, ref, "B", "random_idx")
    finally:
        model.winograd_convolutions = True
    assert nnpack_calls == []
    for i in range(len(trace.preds)):
        for key in OUTPUT_KEYS:
            _close(trace.preds[i][key], ref[f"B_random_idx_{key}_{i}"], f"{key} {i}")


def test_view_zero_defines_the_frame(model: Fast3R, tiny_reference) -> None:
    """Semantic check: the global head of the first view is a pointmap in its own frame, so
    feeding the same image twice gives two pointmaps that differ only through the image index:
    with equal ids they are identical, with different ids they are not."""
    view = _views(tiny_reference, "A")[0]
    with torch.no_grad():
        same = model([view, view], torch.tensor([0, 0]))
        other = model([view, view], torch.tensor([0, 1]))
    torch.testing.assert_close(same[0]["pts3d_in_other_view"], same[1]["pts3d_in_other_view"])
    gap = (other[0]["pts3d_in_other_view"] - other[1]["pts3d_in_other_view"]).abs().max()
    assert gap > 1e-4


def test_attention_sharpening_only_in_eval(tiny_weights: Path, tmp_path: Path, tiny_reference):
    """attn_bias_for_inference_enabled (class default True) scales fusion attention logits by
    1.28153 in eval mode only; the shipped configs turn it off."""
    config = json.loads((tiny_weights / "config.json").read_text())
    config["decoder_args"]["attn_bias_for_inference_enabled"] = True
    folder = tmp_path / "sharpened"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(tiny_weights / "model.safetensors", folder / "model.safetensors")
    assert pytest.approx(1.28153, abs=1e-5) == INFERENCE_ATTN_SCALE

    views = _views(tiny_reference, "A")
    ids = torch.arange(len(views))
    plain = Fast3R.from_pretrained(tiny_weights)
    sharp = Fast3R.from_pretrained(folder)
    with torch.no_grad():
        eval_gap = (plain(views, ids)[1]["conf"] - sharp(views, ids)[1]["conf"]).abs().max()
        plain.train(), sharp.train()
        train_gap = (plain(views, ids)[1]["conf"] - sharp(views, ids)[1]["conf"]).abs().max()
    assert eval_gap > 1e-4
    assert train_gap == 0
