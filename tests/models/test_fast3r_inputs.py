"""Image ids and input checks of Fast3R.forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aetherscan.models import Fast3R
from aetherscan.models.backbone import IMAGE_IDX_TABLE_ROWS, draw_image_ids


@pytest.fixture(scope="module")
def model(tiny_weights: Path) -> Fast3R:
    return Fast3R.from_pretrained(tiny_weights)


def test_random_ids_follow_the_global_seed_like_the_original() -> None:
    torch.manual_seed(1234)
    assert draw_image_ids(3, random=True).tolist() == [0, 504, 253]


def test_random_ids_are_distinct_and_start_at_zero() -> None:
    ids = draw_image_ids(IMAGE_IDX_TABLE_ROWS, random=True)
    assert ids[0] == 0
    assert sorted(ids.tolist()) == list(range(IMAGE_IDX_TABLE_ROWS))


def test_caller_generator_makes_ids_reproducible() -> None:
    first = draw_image_ids(5, random=True, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(0)  # the global RNG plays no part
    second = draw_image_ids(5, random=True, generator=torch.Generator().manual_seed(7))
    assert first.tolist() == second.tolist()


def test_sequential_ids() -> None:
    assert draw_image_ids(4, random=False).tolist() == [0, 1, 2, 3]


def test_more_views_than_the_table_are_refused() -> None:
    for random in (True, False):
        with pytest.raises(ValueError, match="at most 1000 views"):
            draw_image_ids(IMAGE_IDX_TABLE_ROWS + 1, random=random)


def test_forward_takes_a_generator(model: Fast3R) -> None:
    views = [torch.zeros(1, 3, 32, 48), torch.zeros(1, 3, 32, 48)]
    with torch.no_grad():
        a = model.trace(views, generator=torch.Generator().manual_seed(3))
        b = model.trace(views, generator=torch.Generator().manual_seed(3))
    assert a.image_ids.tolist() == b.image_ids.tolist()
    torch.testing.assert_close(a.preds[1]["conf"], b.preds[1]["conf"], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("views", "message"),
    [
        ([], "non-empty list"),
        ([torch.zeros(3, 32, 32)], r"view 0: expected .*\(3, 32, 32\)"),
        ([torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 40)], r"view 1: .*multiples of 16"),
        ([torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32)], r"view 1: .*B=1"),
        ([torch.zeros(1, 1, 32, 32)], r"view 0: .*\(B=1, 3, H, W\)"),
        ([torch.zeros(1, 3, 32, 32, dtype=torch.uint8)], "float tensor"),
    ],
)
def test_bad_views_are_refused_with_the_expected_shape(model: Fast3R, views, message) -> None:
    with pytest.raises(ValueError, match=message):
        model(views)


def test_bad_image_ids_are_refused(model: Fast3R) -> None:
    views = [torch.zeros(1, 3, 32, 32)] * 2
    for ids in (torch.tensor([0]), torch.tensor([0, 1000]), torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match=r"image_ids as an integer tensor \(2,\)"):
            model(views, ids)


def test_batch_of_scenes(model: Fast3R) -> None:
    """B scenes at once give what each scene gives alone."""
    g = torch.Generator().manual_seed(0)
    views = [torch.rand(2, 3, 32, 48, generator=g) * 2 - 1 for _ in range(2)]
    ids = torch.tensor([0, 9])
    with torch.no_grad():
        both = model(views, ids)
        second = model([v[1:] for v in views], ids)
    for v in range(2):
        assert both[v]["pts3d_local"].shape == (2, 32, 48, 3)
        torch.testing.assert_close(both[v]["conf"][1:], second[v]["conf"], rtol=0, atol=1e-5)
