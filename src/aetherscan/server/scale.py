"""The body of ``PUT /api/jobs/{id}/scale`` (``protocol.ScaleRequest``) read into one number,
the length in metres of one unit of the job's scene, or a ``ScaleRefused`` with the sentence
that tells a client what to send instead."""

from __future__ import annotations

import json
import math
from typing import Any

FORMS = (
    '{"metres_per_unit": 0.0123}, or two points of the scene in its own units (as GET '
    "/api/jobs/{id}/points gives them) and their true distance in metres: "
    '{"points": [[x, y, z], [x, y, z]], "length_m": 0.3}'
)


class ScaleRefused(ValueError):
    """A scale that cannot be used; the message is one sentence for people."""


def metres_per_unit(body: bytes) -> float:
    """The scale a request body asks for, checked: a positive finite factor."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, 4300-digit numbers, deep
        raise ScaleRefused(f"the body is not JSON that can be read; send {FORMS}") from None
    if not isinstance(request, dict):
        raise ScaleRefused(f"the body must be a JSON object: {FORMS}")
    factor, points, length = (request.get(key) for key in ("metres_per_unit", "points", "length_m"))
    if factor is not None and (points is not None or length is not None):
        raise ScaleRefused(f"give either metres_per_unit or points and length_m, not both: {FORMS}")
    if factor is not None:
        return _positive("metres_per_unit", factor, "the length in metres of one unit")
    if points is None and length is None:
        raise ScaleRefused(f"the body gives no scale: send {FORMS}")
    if points is None or length is None:
        missing = "points" if points is None else "length_m"
        raise ScaleRefused(f"{missing} is missing: with two points, give their length too: {FORMS}")
    a, b = _two_points(points)
    length_m = _positive("length_m", length, "the true distance in metres between the points")
    distance = math.dist(a, b)
    if distance == 0:
        raise ScaleRefused(
            "the two points are the same point, so they measure no length: pick two points "
            "apart, such as the two ends of a ruler"
        )
    return _positive("the scale these points give", length_m / distance, "a usable factor")


def _positive(name: str, value: Any, meaning: str) -> float:
    number = _finite(value)
    if number is None or number <= 0:
        raise ScaleRefused(
            f"{name} must be a positive finite number ({meaning}); got {_shown(value)}"
        )
    return number


def _two_points(points: Any) -> tuple[list[float], list[float]]:
    ok = (
        isinstance(points, list)
        and len(points) == 2
        and all(
            isinstance(point, list)
            and len(point) == 3
            and all(_finite(x) is not None for x in point)
            for point in points
        )
    )
    if not ok:
        raise ScaleRefused(
            "points must be two points [[x, y, z], [x, y, z]] of finite numbers, in the scene's "
            f"own units (as GET /api/jobs/{{id}}/points gives them); got {_shown(points)}"
        )
    return [float(x) for x in points[0]], [float(x) for x in points[1]]


def _finite(value: Any) -> float | None:
    """The number as a finite float; None for anything else (true and false included)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
