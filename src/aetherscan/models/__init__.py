"""Fast3R: our PyTorch implementation that loads the released checkpoint unchanged."""

from aetherscan.models.fast3r import (
    CheckpointMismatchError,
    Fast3R,
    Fast3RConfig,
    Fast3RTrace,
    fast3r_vitl_512,
)
from aetherscan.models.hub import WeightsNotFoundError, download_weights, find_local_weights

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
