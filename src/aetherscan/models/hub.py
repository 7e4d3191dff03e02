"""Where Fast3R weights come from: a local folder, the Hugging Face cache, or a download.

A weights folder holds ``config.json`` (the original's ``encoder_args``/``decoder_args``/
``head_args``) and ``model.safetensors``. Hub ids (``org/name``) are looked up in the usual
Hugging Face cache, read from the environment at call time (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), so nothing here touches the network
unless ``download_weights`` is called.

Licence: the released ``jedyang97/Fast3R_ViT_Large_512`` weights are under the FAIR
Noncommercial Research License.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The released checkpoint, the weights setting's default (FAIR Noncommercial Research License).
DEFAULT_WEIGHTS = "jedyang97/Fast3R_ViT_Large_512"
WEIGHT_FILES = ("config.json", "model.safetensors")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DOWNLOAD_TIMEOUT_S = 10.0


class WeightsNotFoundError(FileNotFoundError):
    """The weights are neither local nor downloadable; the message says what to do."""


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, following the environment as huggingface_hub does."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or "~/.cache"
    home = env.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(home).expanduser() / "hub"


def _is_weights_folder(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in WEIGHT_FILES)


def _find_in_cache(hub_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    found = [try_to_load_from_cache(hub_id, name, cache_dir=cache) for name in WEIGHT_FILES]
    if all(isinstance(f, str) for f in found):
        folders = {Path(f).parent for f in found}  # type: ignore[arg-type]
        if len(folders) == 1:
            return folders.pop()
    # A snapshot fetched at a pinned revision has no refs/main: take the newest complete one.
    snapshots = cache / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    complete = [p for p in snapshots.glob("*") if _is_weights_folder(p)]
    return max(complete, key=lambda p: p.stat().st_mtime) if complete else None


def find_local_weights(name_or_path: str | Path) -> Path | None:
    """The weights folder for a local path or an already cached hub id, else None. No network."""
    path = Path(name_or_path).expanduser()
    if _is_weights_folder(path):
        return path
    if not path.exists() and _HUB_ID.match(str(name_or_path)):
        return _find_in_cache(str(name_or_path))
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_weights(hub_id: str) -> Path:
    """Download ``config.json`` and ``model.safetensors`` of ``hub_id`` into the HF cache.

    Shows huggingface_hub's progress bars. Fails at once when ``HF_HUB_OFFLINE`` is set and
    within seconds without network, with a ``WeightsNotFoundError`` that says what to do.
    """
    if _offline():
        raise WeightsNotFoundError(_unavailable(hub_id, "HF_HUB_OFFLINE is set"))
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            hub_id,
            cache_dir=hub_cache_dir(),
            allow_patterns=list(WEIGHT_FILES),
            etag_timeout=_DOWNLOAD_TIMEOUT_S,
        )
    # huggingface_hub raises its own errors, OSError and httpx/requests errors depending on
    # version and failure; all of them mean the same thing to the caller.
    except Exception as exc:
        raise WeightsNotFoundError(_unavailable(hub_id, f"{type(exc).__name__}: {exc}")) from exc
    path = Path(folder)
    if not _is_weights_folder(path):
        raise WeightsNotFoundError(
            f"hub repo {hub_id!r} has no {' and '.join(WEIGHT_FILES)}; is it a Fast3R model?"
        )
    return path


def _unavailable(hub_id: str, reason: str) -> str:
    first_line = reason.splitlines()[0] if reason else "unknown error"
    return (
        f"Fast3R weights {hub_id!r} are not on this machine and could not be downloaded "
        f"({first_line}). Either point the weights setting at a local folder holding "
        f"config.json and model.safetensors (--weights /path/to/folder or "
        f"AETHERSCAN_WEIGHTS=/path/to/folder), or download them once where there is network "
        f"(`hf download {hub_id}`, or huggingface_hub.snapshot_download) and set HF_HOME to "
        f"that cache (looked in {hub_cache_dir()}). The released Fast3R weights are under the "
        f"FAIR Noncommercial Research License."
    )


def resolve_weights(name_or_path: str | Path) -> Path:
    """A local weights folder for ``name_or_path``, downloading a hub id when not cached."""
    found = find_local_weights(name_or_path)
    if found is not None:
        return found
    path = Path(name_or_path).expanduser()
    if path.exists():
        missing = [n for n in WEIGHT_FILES if not (path / n).is_file()]
        raise WeightsNotFoundError(f"{path} is not a Fast3R weights folder: it lacks {missing}")
    if not _HUB_ID.match(str(name_or_path)):
        raise WeightsNotFoundError(
            f"{name_or_path!r} is neither an existing folder nor a hub id like 'org/name'"
        )
    return download_weights(str(name_or_path))
