"""Fast3R: our PyTorch implementation that loads the released checkpoint unchanged.

The names below load on first use, so that ``aetherscan.models.hub`` (where the weights are,
which the settings and the command line ask) does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aetherscan.models.fast3r import (
        CheckpointMismatchError,
        Fast3R,
        Fast3RConfig,
        Fast3RTrace,
        fast3r_vitl_512,
    )
    from aetherscan.models.hub import WeightsNotFoundError, download_weights, find_local_weights

_HOMES = {
    "CheckpointMismatchError": "aetherscan.models.fast3r",
    "Fast3R": "aetherscan.models.fast3r",
    "Fast3RConfig": "aetherscan.models.fast3r",
    "Fast3RTrace": "aetherscan.models.fast3r",
    "fast3r_vitl_512": "aetherscan.models.fast3r",
    "WeightsNotFoundError": "aetherscan.models.hub",
    "download_weights": "aetherscan.models.hub",
    "find_local_weights": "aetherscan.models.hub",
}

__all__ = [
    "CheckpointMismatchError",
    "Fast3R",
    "Fast3RConfig",
    "Fast3RTrace",
    "WeightsNotFoundError",
    "download_weights",
    "fast3r_vitl_512",
    "find_local_weights",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
