"""Checkpoint keys, config parsing and the ViT-L/512 preset."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from aetherscan.models import CheckpointMismatchError, Fast3R, Fast3RConfig, fast3r_vitl_512
from aetherscan.models.fast3r import checkpoint_to_model_keys, fast3r_vitl_512_config

# config.json of jedyang97/Fast3R_ViT_Large_512 as reconstructed in SPEC.md section 2.1
VITL_512_CONFIG = """
{"decoder_args": {"attn_bias_for_inference_enabled": false, "attn_drop": 0.0,
  "attn_implementation": "flash_attention", "decoder_type": "fast3r", "depth": 24, "drop": 0.0,
  "embed_dim": 1024, "enc_embed_dim": 1024, "mlp_ratio": 4.0, "num_heads": 16,
  "qkv_bias": true, "random_image_idx_embedding": true},
 "encoder_args": {"attn_implementation": "flash_attention", "depth": 24, "embed_dim": 1024,
  "encoder_type": "croco", "img_size": 512, "mlp_ratio": 4, "num_heads": 16,
  "patch_embed_cls": "PatchEmbedDust3R", "patch_size": 16, "pos_embed": "RoPE100"},
 "head_args": {"conf_mode": ["exp", 1, Infinity], "depth_mode": ["exp", -Infinity, Infinity],
  "head_type": "dpt", "landscape_only": false, "output_mode": "pts3d", "patch_size": 16,
  "with_local_head": true}}
"""


def _read_tsv(path: Path) -> dict[str, tuple[int, ...]]:
    rows = path.read_text().splitlines()[1:]
    return {key: tuple(json.loads(shape)) for key, shape, _ in (r.split("\t") for r in rows)}


def _weights_folder(src: Path, dst: Path, checkpoint: dict[str, torch.Tensor]) -> Path:
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    save_file(checkpoint, dst / "model.safetensors")
    return dst


def _outputs(model: Fast3R, views: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    with torch.no_grad():
        return model(views, torch.arange(len(views)))


# ------------------------------------------------------------------------------ presets


def test_vitl_512_parameters_match_released_checkpoint(fast3r_reference: Path) -> None:
    with torch.device("meta"):
        model = fast3r_vitl_512()
    ours = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert ours == _read_tsv(fast3r_reference / "safetensors_keys_vitl512.tsv")
    assert sum(math.prod(s) for s in ours.values()) == 647_551_368
    # The original's state dict adds 8 aliases (scratch.layer_rn.N); ours keeps one name each.
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    original = _read_tsv(fast3r_reference / "state_dict_keys_vitl512.tsv")
    aliases = {k for k in original if ".scratch.layer_rn." in k}
    assert len(aliases) == 8
    assert state == {k: v for k, v in original.items() if k not in aliases}


def test_vitl_512_config_parses_to_preset() -> None:
    config = Fast3RConfig.from_dict(json.loads(VITL_512_CONFIG))
    assert config == fast3r_vitl_512_config()
    assert config.head.conf_mode == ("exp", 1.0, math.inf)
    assert config.decoder.attn_bias_for_inference_enabled is False


def test_config_accepts_infinity_as_string_and_names_missing_keys() -> None:
    raw = json.loads(VITL_512_CONFIG)
    raw["head_args"]["depth_mode"] = ["exp", "-inf", "inf"]
    assert Fast3RConfig.from_dict(raw).head.depth_mode == ("exp", -math.inf, math.inf)
    del raw["decoder_args"]["random_image_idx_embedding"]
    with pytest.raises(ValueError, match="random_image_idx_embedding"):
        Fast3RConfig.from_dict(raw)


def test_config_defaults_follow_the_original_classes() -> None:
    raw = json.loads(VITL_512_CONFIG)
    for key in ("attn_bias_for_inference_enabled", "attn_implementation"):
        del raw["decoder_args"][key]
    del raw["head_args"]["with_local_head"]
    config = Fast3RConfig.from_dict(raw)
    assert config.decoder.attn_bias_for_inference_enabled is True
    assert config.decoder.attn_implementation == "pytorch_naive"
    assert config.head.with_local_head is False
    assert config.dpt.layer_dims == (96, 192, 384, 768)


def test_tiny_config_reads_dpt_widths(fast3r_reference: Path) -> None:
    raw = json.loads((fast3r_reference / "tiny_config.json").read_text())
    config = Fast3RConfig.from_dict(raw)
    dpt = raw["_tiny_dpt_head_hyperparams"]
    assert config.dpt.feature_dim == dpt["feature_dim"]
    assert config.dpt.last_dim == dpt["last_dim"]
    assert list(config.dpt.layer_dims) == dpt["layer_dims"]


# ------------------------------------------------------------------------------ loading


def test_loads_fp32_on_cpu_in_eval_mode(tiny_weights: Path) -> None:
    model = Fast3R.from_pretrained(tiny_weights)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.decoder.image_idx_emb.shape == (1000, model.config.decoder.embed_dim)


def test_other_layer_rn_spelling_loads(tiny_weights: Path, tmp_path: Path, reference_views) -> None:
    checkpoint = load_file(tiny_weights / "model.safetensors")

    def original_alias(key: str) -> str:  # scratch.layer3_rn. -> scratch.layer_rn.2.
        return re.sub(
            r"scratch\.layer(\d)_rn\.", lambda m: f"scratch.layer_rn.{int(m[1]) - 1}.", key
        )

    renamed = {original_alias(k): v for k, v in checkpoint.items()}
    assert sum(".layer_rn." in k for k in renamed) == 8
    folder = _weights_folder(tiny_weights, tmp_path / "renamed", renamed)
    expected = _outputs(Fast3R.from_pretrained(tiny_weights), reference_views("A"))
    got = _outputs(Fast3R.from_pretrained(folder), reference_views("A"))
    for a, b in zip(got, expected, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_both_spellings_at_once_are_one_tensor(tiny_weights: Path) -> None:
    checkpoint = load_file(tiny_weights / "model.safetensors")
    expected = {k: v.shape for k, v in checkpoint.items()}
    key = "downstream_head.dpt.scratch.layer2_rn.weight"
    alias = "downstream_head.dpt.scratch.layer_rn.1.weight"
    assert checkpoint_to_model_keys({**checkpoint, alias: checkpoint[key]}, expected).keys() == (
        expected.keys()
    )
    with pytest.raises(CheckpointMismatchError, match="differ"):
        checkpoint_to_model_keys({**checkpoint, alias: checkpoint[key] + 1}, expected)


def test_missing_extra_and_misshapen_keys_are_named(tiny_weights: Path, tmp_path: Path) -> None:
    checkpoint = load_file(tiny_weights / "model.safetensors")
    missing = "decoder.dec_blocks.3.mlp.fc1.bias"
    misshapen = "encoder.enc_norm.weight"
    del checkpoint[missing]
    checkpoint["decoder.extra_thing.weight"] = torch.zeros(2)
    checkpoint[misshapen] = torch.zeros(7)
    folder = _weights_folder(tiny_weights, tmp_path / "broken", checkpoint)
    with pytest.raises(CheckpointMismatchError) as error:
        Fast3R.from_pretrained(folder)
    message = str(error.value)
    assert f"missing (1): {missing}" in message
    assert "unexpected (1): decoder.extra_thing.weight" in message
    assert misshapen in message and "(7,)" in message


def test_non_strict_loading_warns_by_name(tiny_weights: Path, tmp_path: Path) -> None:
    checkpoint = load_file(tiny_weights / "model.safetensors")
    del checkpoint["decoder.dec_norm.bias"]
    folder = _weights_folder(tiny_weights, tmp_path / "partial", checkpoint)
    with pytest.warns(UserWarning, match=r"decoder\.dec_norm\.bias"):
        model = Fast3R.from_pretrained(folder, strict=False)
    torch.testing.assert_close(
        model.decoder.dec_norm.weight,
        load_file(tiny_weights / "model.safetensors")["decoder.dec_norm.weight"],
    )


def test_device_and_dtype_are_the_callers(
    tiny_weights: Path, tiny_reference, reference_views
) -> None:
    model = Fast3R.from_pretrained(tiny_weights, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    preds = _outputs(model, reference_views("A"))
    ref = tiny_reference["A_sequential_idx_pts3d_local_0"]
    assert preds[0]["pts3d_local"].dtype == torch.float32  # outputs are always fp32
    scale = np.abs(ref).max()
    assert np.abs(preds[0]["pts3d_local"].numpy() - ref).max() < 0.05 * scale
