"""Subject boxes: ``(x0, y0, x1, y1)`` as fractions of the image, shared by MUSIC's data and planner."""

from __future__ import annotations

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` as fractions of the image (0..1), ``x0 < x1`` and ``y0 < y1``."""


def box_area(box: Box) -> float:
    """The box's area as a fraction of the image's (0..1)."""
    return (box[2] - box[0]) * (box[3] - box[1])


def box_contains(box: Box, x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` (fractions of the image) lies in the box (half-open, like pixels)."""
    return box[0] <= x < box[2] and box[1] <= y < box[3]


__all__ = ["Box", "box_area", "box_contains"]
