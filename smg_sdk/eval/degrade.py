"""Degradations that tiny generators produce, for measuring the oracle's robustness.

Each takes a ``(H, W, 3)`` uint8 array and a numpy ``Generator`` and returns a new uint8
array of the same shape. Strengths are fixed at the levels the oracle is specified for
(``>= 90 %`` per-attribute accuracy): they are the test, so they are not arguments.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage


def blur(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma 1.0..1.5 px (a soft decoder)."""
    sigma = float(rng.uniform(1.0, 1.5))
    return ndimage.gaussian_filter(pixels.astype(np.float32), (sigma, sigma, 0)).round().clip(0, 255).astype(np.uint8)


def noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, sigma 12 per channel (an under-denoised sample)."""
    noisy = pixels.astype(np.float32) + rng.normal(0.0, 12.0, pixels.shape)
    return noisy.round().clip(0, 255).astype(np.uint8)


def colour_shift(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A global shift of -15..15 per channel and a contrast change of 0.9..1.1."""
    shift = rng.uniform(-15.0, 15.0, 3)
    gain = float(rng.uniform(0.9, 1.1))
    out = (pixels.astype(np.float32) - 128.0) * gain + 128.0 + shift
    return out.round().clip(0, 255).astype(np.uint8)


def deform(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth elastic warp of up to ~2 px (wobbly outlines), edges kept."""
    h, w = pixels.shape[:2]
    field = [ndimage.gaussian_filter(rng.normal(0.0, 1.0, (h, w)), 8.0) for _ in range(2)]
    field = [f / (np.abs(f).max() + 1e-9) * 2.0 for f in field]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = [yy + field[0], xx + field[1]]
    channels = [ndimage.map_coordinates(pixels[..., c], coords, order=1, mode="nearest") for c in range(3)]
    return np.stack(channels, axis=2)


def jpeg(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG at quality 40..60."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=int(rng.integers(40, 61)))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def combined(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Deform, blur, colour shift, noise and JPEG, one after another."""
    for step in (deform, blur, colour_shift, noise, jpeg):
        pixels = step(pixels, rng)
    return pixels


DEGRADATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blur": blur, "noise": noise, "colour_shift": colour_shift, "deform": deform, "jpeg": jpeg, "combined": combined,
}
"""Every degradation by name (``combined`` applies all of them)."""

__all__ = ["DEGRADATIONS", "blur", "colour_shift", "combined", "deform", "jpeg", "noise"]
