"""Picking photos around a ring (benchmarks/subsample_set.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scripts(benchmark_script):
    return benchmark_script("subsample_set"), benchmark_script("synthetic_object")


def test_ring_angles_and_steps(scripts):
    subsample_set, synthetic_object = scripts
    capture = synthetic_object.Capture(kind="ring", photos=18, step_deg=20, elevation_swing_deg=8)
    centres = np.array(
        [np.linalg.inv(s.cam_from_object)[:3, 3] for s in synthetic_object.shots(capture)]
    )
    order = np.random.default_rng(0).permutation(18)  # the files need not be in ring order
    azimuths = subsample_set.ring_azimuths_deg(centres[order])
    true = (20.0 * order - 20.0 * order[0]) % 360
    true = true if azimuths[1] == pytest.approx(true[1], abs=1) else (-true) % 360
    np.testing.assert_allclose(azimuths, true, atol=1.0)
    kept = subsample_set.pick_by_step(azimuths, 60.0, first=0)
    assert len(kept) == 6 and kept[0] == 0
    steps = np.diff(np.sort(azimuths[kept]))
    np.testing.assert_allclose(steps, 60.0, atol=1.0)
    assert len(subsample_set.pick_by_step(azimuths, 45.0)) == 8  # nearest within half a step
