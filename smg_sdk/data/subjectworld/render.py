"""Pixels: shape masks, patterns in the shape's frame, textured backgrounds, compositing.

Pure numpy + PIL; no anti-aliasing, so a subject's mask is exact (every pixel belongs to one
subject or to the background) and the renderer is fast. A sprite is drawn on its own square
of side ``size`` px, rotated by ``rotation`` degrees (counter-clockwise), and written into
the canvas at its box. The pattern is defined in the shape's own frame, so it turns with it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ...errors import DataError
from .identities import Identity
from .vocab import BACKGROUNDS, COLOURS, PATTERNS

def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``(N, 2)`` unit-frame points (x right, y down) counter-clockwise on screen."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    x, y = points[:, 0], points[:, 1]
    return np.stack([c * x + s * y, -s * x + c * y], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]]),
    "triangle": np.array([[0.0, -1.0], [0.866, 0.5], [-0.866, 0.5]]) + np.array([0.0, 0.2]),
    "star": _star(),
    "cross": np.array([
        [-0.3, -0.95], [0.3, -0.95], [0.3, -0.3], [0.95, -0.3], [0.95, 0.3], [0.3, 0.3],
        [0.3, 0.95], [-0.3, 0.95], [-0.3, 0.3], [-0.95, 0.3], [-0.95, -0.3], [-0.3, -0.3],
    ]),
    "diamond": np.array([[0.0, -1.0], [0.55, 0.0], [0.0, 1.0], [-0.55, 0.0]]),
}
_DISCS: dict[str, tuple[tuple[float, float, float, int], ...]] = {
    # (centre x, centre y, radius, fill) drawn in order; 0 cuts a hole
    "circle": ((0.0, 0.0, 0.92, 255),),
    "ring": ((0.0, 0.0, 0.98, 255), (0.0, 0.0, 0.55, 0)),
    "moon": ((0.0, 0.0, 0.95, 255), (0.45, -0.2, 0.78, 0)),
}


@lru_cache(maxsize=16384)
def shape_mask(shape: str, size: int, rotation: float) -> np.ndarray:
    """``(size, size)`` bool mask of ``shape`` inscribed in the square, rotated by ``rotation`` degrees."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    half = size / 2.0
    to_px = lambda p: [(half + half * x - 0.5, half + half * y - 0.5) for x, y in p]  # noqa: E731
    if shape in _POLYGONS:
        draw.polygon(to_px(_rotate(_POLYGONS[shape], rotation)), fill=255)
    else:
        for cx, cy, r, fill in _DISCS[shape]:
            (cx, cy), = _rotate(np.array([[cx, cy]]), rotation)
            x0, y0 = half + half * (cx - r) - 0.5, half + half * (cy - r) - 0.5
            draw.ellipse([x0, y0, x0 + half * 2 * r, y0 + half * 2 * r], fill=fill)
    mask = np.asarray(canvas) > 127
    mask.flags.writeable = False
    return mask


@lru_cache(maxsize=16384)
def pattern_mask(pattern: str, size: int, rotation: float) -> np.ndarray:
    """``(size, size)`` bool map of pattern-colour pixels, in the shape frame rotated by ``rotation``."""
    coords = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
    x, y = np.meshgrid(coords, coords)
    a = math.radians(rotation)
    u = math.cos(a) * x - math.sin(a) * y  # inverse rotation: screen -> shape frame
    v = math.sin(a) * x + math.cos(a) * y
    if pattern == "plain":
        out = np.zeros((size, size), bool)
    elif pattern == "stripes":
        period = size / 2.5
        out = (v + period / 2) % period < period * 0.3
    elif pattern == "checks":
        cell = size / 4.0
        out = (np.floor(u / cell).astype(int) + np.floor(v / cell).astype(int)) % 2 == 0
    elif pattern == "dots":
        step = size / 2.4
        du = (u + step / 2) % step - step / 2
        dv = (v + step / 2) % step - step / 2
        out = du * du + dv * dv <= (size / 10.0) ** 2
    else:
        raise DataError(f"Unknown pattern {pattern!r}; SubjectWorld patterns are {PATTERNS}.")
    out.flags.writeable = False
    return out


@lru_cache(maxsize=64)
def background(name: str, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 background ``name`` (read-only; copy before drawing)."""
    base, texture, kind = BACKGROUNDS[name]
    image = np.empty((size, size, 3), np.uint8)
    image[:] = base
    if texture is not None:
        yy, xx = np.mgrid[0:size, 0:size]
        if kind == "grid":
            lines = ((xx + 8) % 16 < 2) | ((yy + 8) % 16 < 2)
        elif kind == "planks":
            lines = ((yy + 10) % 20 < 2) | ((xx + 37 * ((yy + 10) // 20)) % 48 < 2)
        elif kind == "weave":
            lines = ((xx // 4 + yy // 4) % 2 == 0) & ((xx + yy) % 4 < 2)
        else:
            raise DataError(f"Unknown texture {kind!r} for background {name!r}; use grid, planks or weave.")
        image[lines] = texture
    image.flags.writeable = False
    return image


def paint_subject(canvas: np.ndarray, identity: Identity, box: tuple[int, int, int, int], rotation: float) -> np.ndarray:
    """Draw ``identity`` into ``canvas`` (``(H, W, 3)`` uint8, in place) at ``box``; return its full-size mask.

    ``box`` is ``(x0, y0, x1, y1)`` in pixels with ``x1 - x0 == y1 - y0`` and fully inside the canvas.
    """
    x0, y0, x1, y1 = box
    size = x1 - x0
    shape = shape_mask(identity.shape, size, rotation)
    region = canvas[y0:y1, x0:x1]
    region[shape] = COLOURS[identity.body]
    if identity.pattern != "plain":
        region[shape & pattern_mask(identity.pattern, size, rotation)] = COLOURS[identity.pattern_colour]
    full = np.zeros(canvas.shape[:2], bool)
    full[y0:y1, x0:x1] = shape
    return full


def to_image(canvas: np.ndarray) -> Image.Image:
    """The canvas as an RGB PIL image."""
    return Image.fromarray(canvas, "RGB")


__all__ = ["background", "paint_subject", "pattern_mask", "shape_mask", "to_image"]
