"""Densification with exact cameras: Middlebury's templeSparseRing (read from the shared folder,
never copied into the repository; Seitz et al., CVPR 2006)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aetherscan.engines.densify import densify
from aetherscan.photos import open_photo_array

# The tight bounding box of the temple model (README.txt of the data set), metres.
BOX_LOW = np.array([-0.073568, 0.021728, -0.012445])
BOX_HIGH = np.array([0.028855, 0.181892, 0.062736])
BOX_MARGIN_M = 0.002
# The temple stands on a dark base just below the box; points above this height are temple.
ABOVE_BASE_Y_M = 0.03


def load_temple(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Images, K (pixel-centre convention) and cam_from_world from templeSR_par.txt."""
    lines = (folder / "templeSR_par.txt").read_text().split("\n")[1:]
    images, Ks, poses = [], [], []
    for line in filter(str.strip, lines):
        name, *numbers = line.split()
        values = np.array(numbers, float)
        K = values[:9].reshape(3, 3)
        K[:2, 2] += 0.5  # their pixel centres are at integer coordinates, ours at + 0.5
        pose = np.eye(4)
        pose[:3, :3] = values[9:18].reshape(3, 3)
        pose[:3, 3] = values[18:]
        images.append(open_photo_array(folder / name))
        Ks.append(K)
        poses.append(pose)
    return images, Ks, poses


@pytest.mark.slow
def test_temple_points_stay_inside_the_true_bounding_box(shared_data: Path) -> None:
    images, Ks, poses = load_temple(shared_data / "temple_ring")

    result = densify(images, Ks, poses)  # no SfM points: the ring's optical axes meet

    xyz = np.concatenate([r[0] for r in result]).astype(np.float64)
    assert len(xyz) > 200_000
    temple = xyz[xyz[:, 1] > ABOVE_BASE_Y_M]
    inside = np.all((temple > BOX_LOW - BOX_MARGIN_M) & (temple < BOX_HIGH + BOX_MARGIN_M), axis=1)
    assert inside.mean() > 0.99, f"{1 - inside.mean():.1%} of the temple's points are outside"
    assert len(temple) > 0.7 * len(xyz)
