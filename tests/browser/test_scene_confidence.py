"""The confidence slider is a percentile, for either engine: "keep the N % most confident
points", the label saying what it keeps (photos that agree for COLMAP, the value for others),
points that tie kept together and the share really kept said, nothing uploaded again."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_kit import JudgedEngine, PlacedEngine, look_at, solid_photos
from scene_kit import HOOK, run_job, settle, shot, uploads

pytestmark = pytest.mark.browser

# Each view: 300 points seen by 4 photos, 300 by 3, 400 by 2, as COLMAP counts them.
TIERS = [(4.0, 300), (3.0, 300), (2.0, 400)]
PER_VIEW = sum(n for _, n in TIERS)
LEVELS = 64  # the confidence table of a frame of 1000 points (docs/protocol.md)


def colmap_like_views(count: int = 2) -> list[dict]:
    rng = np.random.default_rng(7)
    views = []
    for index in range(count):
        confidence = np.concatenate([np.full(n, c) for c, n in TIERS])
        views.append(
            {
                "cam_from_world": look_at([index - 0.5, -0.3, 0], [0, 0, 4]),
                "points": rng.normal(size=(PER_VIEW, 3)) * 0.3 + [0, 0, 4],
                "colors": rng.integers(60, 255, (PER_VIEW, 3)),
                "confidence": rng.permutation(confidence),
            }
        )
    return views


def set_slider(page, position: int) -> str:
    page.fill("#confidence", str(position))
    page.dispatch_event("#confidence", "input")
    settle(page)
    return page.text_content("#confidence-value")


def position_for(share: float) -> int:
    """The slider position (0..1000) that asks for a little less than ``share`` of the points."""
    return int(np.ceil((1 - share) / 0.99 * 1000))


def js_round(value: float) -> int:
    """Math.round: halves go up (Python's round goes to even)."""
    return int(np.floor(value + 0.5))


def shown_percent(label: str) -> int:
    return int(re.match(r"keeps (\d+)\u00a0% of the points", label).group(1))


def test_colmap_confidence_keeps_a_share_of_points_seen_by_enough_photos(page, tmp_path):
    photos = solid_photos(tmp_path / "photos", [(200, 60, 40), (40, 160, 200)])
    server = run_job(page, tmp_path, PlacedEngine(colmap_like_views(), name="colmap"), photos)
    try:
        total = 2 * PER_VIEW
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == total
        assert page.text_content("#confidence-value") == "keeps all points"
        before = uploads(page)

        # 60 % of the points are seen by 3 photos or more: the slider at 60 % keeps them,
        # to within the frame's table (fewer than N / L points of the next tier).
        label = set_slider(page, position_for(0.6))
        drawn = page.evaluate(f"() => {HOOK}.pointsDrawn")
        assert 1200 <= drawn < 1200 + 2 * PER_VIEW / LEVELS + 2
        assert label.endswith(": those seen by at least 3 photos"), label
        assert shown_percent(label) == js_round(100 * drawn / total)
        assert "not" not in label

        # Half of the points cannot be kept without splitting the tier of 3 photos: it is kept
        # whole, and the label says the share kept, not the share asked.
        label = set_slider(page, position_for(0.5))
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == drawn
        assert label == (
            f"keeps {js_round(100 * drawn / total)}\u00a0% of the points (not 50\u00a0%: ties stay "
            "together): "
            "those seen by at least 3 photos"
        )
        shot(page, "confidence-colmap-tie.png")

        # The most confident 30 %: seen by 4 photos.
        label = set_slider(page, position_for(0.3))
        drawn = page.evaluate(f"() => {HOOK}.pointsDrawn")
        assert 600 <= drawn < 600 + 2 * PER_VIEW / LEVELS + 2
        assert label.endswith("those seen by at least 4 photos")
        # At the right end, the most confident tier is all there is to keep.
        assert set_slider(page, 1000).endswith("those seen by at least 4 photos")
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == drawn

        assert set_slider(page, 0) == "keeps all points"
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == total
        assert uploads(page)["calls"] == before["calls"], "the slider uploaded points again"
    finally:
        server.stop()


def test_other_engines_confidence_is_a_percentile_of_its_values(page, tmp_path):
    # JudgedEngine: 400 points a view with confidences spread evenly from 5 down to 1.
    photos = solid_photos(tmp_path / "photos", [(200, 60, 40), (40, 160, 200)])
    server = run_job(page, tmp_path, JudgedEngine(), photos)
    try:
        total = 800
        for share in (0.9, 0.4, 0.1):
            label = set_slider(page, position_for(share))
            drawn = page.evaluate(f"() => {HOOK}.pointsDrawn")
            assert abs(drawn / total - share) < 0.03, (share, drawn, label)
            threshold = page.evaluate(f"() => {HOOK}.view.cloud.threshold")
            # The threshold is the confidence of the last point kept: 5 - 4 i / 399.
            assert threshold == pytest.approx(5 - 4 * (share * 400) / 399, abs=0.1)
            assert label == (
                f"keeps {js_round(100 * drawn / total)}\u00a0% of the points: "
                f"confidence at least {float(f'{threshold:.3g}'):g}"
            )
        shot(page, "confidence-percentile.png")
    finally:
        server.stop()


def test_the_label_words_for_finer_colmap_confidences_and_small_shares(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_function(f"() => {HOOK} !== undefined")
    words = page.evaluate(
        """async () => {
          const { describeKept } = await import("/js/controls.js");
          return [
            describeKept(0.42, 0.4, 3.4, "colmap"),  // a fraction grades the agreement
            describeKept(0.9, 0.5, 1, "colmap"),
            describeKept(0.004, 0.003, 12.345, "fast3r"),
            describeKept(0.999, 0.99, 1.01, "fast3r"),
          ];
        }"""
    )
    nbsp = "\u00a0"
    assert words == [
        f"keeps 42{nbsp}% of the points: those seen by 4+ photos, or by 3 that agree best "
        "(confidence ≥ 3.4)",
        f"keeps 90{nbsp}% of the points (not 50{nbsp}%: ties stay together): "
        "those seen by at least 1 photo",
        f"keeps <1{nbsp}% of the points: confidence at least 12.3",
        f"keeps 99{nbsp}% of the points: confidence at least 1.01",
    ]


def test_points_that_all_tie_leave_nothing_to_choose(page, tmp_path):
    # A dense COLMAP cloud from two photos: every point is seen by exactly 2.
    views = colmap_like_views()
    for view in views:
        view["confidence"] = np.full(PER_VIEW, 2.0)
    photos = solid_photos(tmp_path / "photos", [(200, 60, 40), (40, 160, 200)])
    server = run_job(page, tmp_path, PlacedEngine(views, name="colmap"), photos)
    try:
        assert page.text_content("#confidence-value") == "all points alike: each seen by 2 photos"
        # Moved, it still keeps every point, and says why.
        assert set_slider(page, 700) == "all points alike: each seen by 2 photos"
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == 2 * PER_VIEW
    finally:
        server.stop()
