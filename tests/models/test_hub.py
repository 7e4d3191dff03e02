"""Finding and fetching weights without the network."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from aetherscan.models import Fast3R, WeightsNotFoundError, download_weights, find_local_weights

HUB_ID = "someone/tiny-fast3r"


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return home


def _cache_snapshot(hf_home: Path, weights: Path, *, with_ref: bool) -> Path:
    """Lay out ``weights`` as huggingface_hub does: blobs, a snapshot of links, refs/main."""
    repo = hf_home / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name in ("config.json", "model.safetensors"):
        blob = repo / "blobs" / f"blob-{name}"
        shutil.copy(weights / name, blob)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    if with_ref:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.mark.parametrize("with_ref", [True, False])
def test_finds_hub_id_in_the_cache(hf_home: Path, tiny_weights: Path, with_ref: bool) -> None:
    assert find_local_weights(HUB_ID) is None
    snapshot = _cache_snapshot(hf_home, tiny_weights, with_ref=with_ref)
    assert find_local_weights(HUB_ID) == snapshot


def test_loads_a_cached_hub_id(hf_home: Path, tiny_weights: Path) -> None:
    _cache_snapshot(hf_home, tiny_weights, with_ref=True)
    model = Fast3R.from_pretrained(HUB_ID)
    assert model.config.decoder.depth == Fast3R.from_pretrained(tiny_weights).config.decoder.depth


def test_finds_a_local_folder(tiny_weights: Path, tmp_path: Path) -> None:
    assert find_local_weights(tiny_weights) == tiny_weights
    assert find_local_weights(str(tiny_weights)) == tiny_weights
    assert find_local_weights(tmp_path) is None  # exists, but holds no weights
    assert find_local_weights(tmp_path / "nowhere") is None


def test_offline_download_fails_fast_and_says_what_to_do(
    hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as error:
        download_weights("nobody-here/no-such-model")
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert "no-such-model" in message
    assert "local folder" in message and "config.json and model.safetensors" in message
    assert "HF_HOME" in message and str(hf_home) in message


def test_from_pretrained_offline_raises_the_same(
    hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        Fast3R.from_pretrained("nobody-here/no-such-model")


def test_folder_without_weights_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match=r"lacks \['model.safetensors'\]"):
        Fast3R.from_pretrained(tmp_path)
