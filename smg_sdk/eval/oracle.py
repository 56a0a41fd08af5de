"""The SubjectWorld oracle: reads any image of the world back into facts.

:meth:`Oracle.read` returns the background and, for every subject it sees, the shape, body
colour, pattern, pattern colour, box and mask. It is analytic (no weights), so it has no
training distribution to fall out of, and every decision has a reason that can be printed:

1. **Background and colour shift.** The median of the image border is the background's base
   colour plus any global colour shift; the nearest base colour names the background, and the
   difference is subtracted from the whole image.
   An image whose border matches no background (noise, a failed generation) has no subjects.
2. **Subjects.** Pixels far from the background's colours are foreground; holes are filled
   separately to tell a ring from a disc; connected components above a minimum area whose
   pixels are mostly the body colour or blends towards one pattern colour are subjects.
3. **Colours.** Interior pixels are assigned to the nearest palette colour (pixels far from
   every colour, such as blends at edges, are skipped); the most frequent is the body, the
   second the pattern colour if it covers enough of the subject.
4. **Pattern.** The pattern-colour pixels' orientation coherence (structure tensor) tells
   stripes from spots; their share of the subject tells dots (about a quarter) from checks (half).
5. **Shape.** Rotation-invariant geometry of the filled mask: hole share (ring), solidity
   against the convex hull, and the harmonics of the boundary's distance from the centroid
   (5: star; a strong 4: cross; otherwise concave: moon; 2 diamond, 3 triangle, a weak 4
   square, none circle).

Accuracy on clean and degraded renders is measured by ``benchmarks/subjectworld_oracle.py``
and guarded by ``tests/test_subjectworld_oracle.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..data.subjectworld.identities import Identity
from ..data.subjectworld.vocab import BACKGROUNDS, COLOURS
from ..errors import DataError

_PALETTE = np.array(list(COLOURS.values()), np.float32)
_PALETTE_NAMES = list(COLOURS)
_BG_NAMES = list(BACKGROUNDS)
_BG_BASE = np.array([b[0] for b in BACKGROUNDS.values()], np.float32)
_BG_TEXTURE = np.array([b[1] or b[0] for b in BACKGROUNDS.values()], np.float32)


@dataclass
class OracleConfig:
    """Thresholds (colour distances in 0..255 RGB units; areas as shares of the image)."""

    foreground_distance: float = 45.0
    background_distance: float = 50.0
    min_purity: float = 0.5
    colour_distance: float = 80.0
    min_area: float = 0.003
    min_pattern_share: float = 0.06
    blend_residual: float = 35.0
    stripes_coherence: float = 0.5
    checks_share: float = 0.39
    ring_hole_share: float = 0.10
    round_harmonic: float = 0.035
    concave_solidity: float = 0.75
    cross_harmonic: float = 0.12
    star_harmonic: float = 0.08


@dataclass
class Detection:
    """One subject the oracle sees. ``box`` is ``(x0, y0, x1, y1)`` px (x1, y1 exclusive)."""

    shape: str
    body: str
    pattern: str
    pattern_colour: str | None
    box: tuple[int, int, int, int]
    area: int
    mask: np.ndarray = field(repr=False)

    @property
    def centre(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5

    @property
    def size(self) -> int:
        """Side of the box's bounding square, px."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def identity(self) -> Identity | None:
        """The identity read, or None if the reading is not a valid identity (e.g. one colour twice)."""
        body, colour = self.body, self.pattern_colour
        if self.pattern == "checks" and colour is not None and _PALETTE_NAMES.index(body) > _PALETTE_NAMES.index(colour):
            body, colour = colour, body
        try:
            return Identity(self.shape, body, self.pattern, colour)
        except ValueError:
            return None


@dataclass
class Reading:
    """What the oracle read from one image: the background and the subjects, largest first."""

    background: str
    subjects: list[Detection]


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), np.float32)
    array = np.asarray(image, np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"The oracle reads (H, W, 3) RGB images, got shape {array.shape}; pass a PIL image or an RGB array.")
    return array


class Oracle:
    """Reads SubjectWorld images (PIL or ``(H, W, 3)`` uint8 arrays). See the module docstring."""

    def __init__(self, config: OracleConfig | None = None):
        self.config = config or OracleConfig()

    def read(self, image) -> Reading:
        """The background and the subjects of ``image`` (largest first)."""
        pixels = _as_array(image)
        background, pixels = self._background(pixels)
        if background is None:
            return Reading("unknown", [])
        base, texture = _BG_BASE[_BG_NAMES.index(background)], _BG_TEXTURE[_BG_NAMES.index(background)]
        distance = np.minimum(np.linalg.norm(pixels - base, axis=2), np.linalg.norm(pixels - texture, axis=2))
        foreground = ndimage.binary_opening(distance > self.config.foreground_distance)
        labels, count = ndimage.label(foreground, structure=np.ones((3, 3)))
        min_area = self.config.min_area * foreground.size
        subjects = []
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels == index
            area = int(mask.sum())
            if area >= min_area:
                detection = self._subject(pixels, mask, region, area)
                if detection is not None:
                    subjects.append(detection)
        subjects.sort(key=lambda d: -d.area)
        return Reading(background, subjects)

    def _background(self, pixels: np.ndarray) -> tuple[str, np.ndarray]:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        median = np.median(border, axis=0)
        candidates = np.concatenate([_BG_BASE, _BG_TEXTURE])  # the border may show mostly texture
        distances = np.linalg.norm(candidates - median, axis=1)
        index = int(distances.argmin())
        if distances[index] > self.config.background_distance:
            return None, pixels
        return _BG_NAMES[index % len(_BG_NAMES)], pixels - (median - candidates[index])

    def _subject(self, pixels: np.ndarray, mask: np.ndarray, region: tuple[slice, slice], area: int) -> Detection | None:
        """The subject in ``mask``, or None for a blob that is not one (mostly off-palette pixels: noise)."""
        ys, xs = region
        box = (xs.start, ys.start, xs.stop, ys.stop)
        colours = self._colours(pixels, mask)
        if colours is None:
            return None
        body, colour, pattern = colours
        shape = self._shape(mask[region])
        return Detection(shape, body, pattern, colour, box, area, mask)

    def _colours(self, pixels: np.ndarray, mask: np.ndarray) -> tuple[str, str | None, str] | None:
        inner = _interior(mask)
        values = pixels[inner]
        dist = np.linalg.norm(values[:, None, :] - _PALETTE[None], axis=2)
        nearest, close = dist.argmin(axis=1), dist.min(axis=1) < self.config.colour_distance
        counts = np.bincount(nearest[close], minlength=len(_PALETTE))
        body = int(counts.argmax())
        colour, assigned = _pattern_colour(values, body, self.config.blend_residual)
        near_body = np.linalg.norm(values - _PALETTE[body], axis=1) < self.config.colour_distance
        if (near_body | assigned).mean() < self.config.min_purity:
            return None
        if colour is None or assigned.sum() < self.config.min_pattern_share * len(values):
            return _PALETTE_NAMES[body], None, "plain"
        pattern_map = np.zeros(mask.shape, bool)
        pattern_map[inner] = assigned
        share = _split_share(values, body, colour, self.config.blend_residual)
        return _PALETTE_NAMES[body], _PALETTE_NAMES[colour], self._pattern(pattern_map, inner, share)

    def _pattern(self, pattern_map: np.ndarray, inner: np.ndarray, share: float) -> str:
        if _coherence(pattern_map, ndimage.binary_erosion(inner)) > self.config.stripes_coherence:
            return "stripes"
        return "checks" if share > self.config.checks_share else "dots"

    def _shape(self, mask: np.ndarray) -> str:
        filled = ndimage.binary_fill_holes(mask)
        if (filled.sum() - mask.sum()) / max(filled.sum(), 1) > self.config.ring_hole_share:
            return "ring"
        harmonics = _radial_harmonics(filled)
        k = int(np.argmax(harmonics)) + 1
        if k == 5 and harmonics[4] > self.config.star_harmonic:
            return "star"
        if k == 4 and harmonics[3] > self.config.cross_harmonic:
            return "cross"
        if _solidity(filled) < self.config.concave_solidity:
            return "moon"
        if harmonics[k - 1] < self.config.round_harmonic:
            return "circle"
        return {2: "diamond", 3: "triangle", 4: "square"}.get(k, "circle")

def _interior(mask: np.ndarray) -> np.ndarray:
    """The mask without its outline (where edge pixels blend with the background): two pixels
    in, or one, or none for subjects too thin to erode."""
    for iterations in (2, 1):
        inner = ndimage.binary_erosion(mask, iterations=iterations)
        if inner.sum() >= 0.3 * mask.sum():
            return inner
    return mask


def _pattern_colour(values: np.ndarray, body: int, max_residual: float) -> tuple[int | None, np.ndarray]:
    """The palette colour that pixels ``(N, 3)`` blend towards from ``body``, and which pixels do.

    A blurred or compressed pattern pixel lies on the segment from the body colour to the
    pattern colour; each pixel far enough from the body is given to the colour whose segment
    passes closest (within ``max_residual``), so a blurred black-on-red dot counts as black,
    not as the brown it resembles."""
    base = _PALETTE[body]
    offsets = values - base
    far = np.linalg.norm(offsets, axis=1) > 40.0
    directions = _PALETTE - base  # (C, 3)
    lengths = np.maximum((directions**2).sum(axis=1), 1e-9)
    t = np.clip(offsets @ directions.T / lengths, 0.0, 1.0)  # (N, C)
    residual = np.linalg.norm(offsets[:, None, :] - t[..., None] * directions[None], axis=2)
    residual[:, body] = np.inf
    residual[t < 0.35] = np.inf
    best = residual.argmin(axis=1)
    ok = far & (residual.min(axis=1) < max_residual)
    if not ok.any():
        return None, np.zeros(len(values), bool)
    colour = int(np.bincount(best[ok], minlength=len(_PALETTE)).argmax())
    return colour, ok & (best == colour)


def _split_share(values: np.ndarray, body: int, colour: int, max_residual: float) -> float:
    """Share of the pixels on the body-to-pattern segment that lie nearer the pattern end.

    Blur and JPEG move pixels of both colours towards each other but rarely across the
    middle, so this share stays near the drawn one (dots ~0.2, checks 0.5)."""
    base, direction = _PALETTE[body], _PALETTE[colour] - _PALETTE[body]
    t = (values - base) @ direction / float(direction @ direction)
    residual = np.linalg.norm(values - base - np.clip(t, 0, 1)[:, None] * direction, axis=1)
    on_segment = residual < max_residual
    return float((t[on_segment] >= 0.5).mean()) if on_segment.any() else 0.0


def _coherence(binary: np.ndarray, where: np.ndarray) -> float:
    """Orientation coherence of a binary map's edges inside ``where``, 0 (isotropic) .. 1 (one direction).

    Edges at the subject's own outline are left out (``where`` is the eroded interior), so
    a ring's curve does not hide its stripes."""
    image = ndimage.gaussian_filter(binary.astype(np.float32), 1.0)
    gx, gy = ndimage.sobel(image, axis=1) * where, ndimage.sobel(image, axis=0) * where
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    trace = jxx + jyy
    if trace <= 1e-9:
        return 0.0
    return float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / trace)


def _radial_harmonics(filled: np.ndarray, bins: int = 72) -> np.ndarray:
    """Magnitudes of harmonics 1..6 of the boundary radius around the centroid, over the mean radius."""
    ys, xs = np.nonzero(filled)
    cy, cx = ys.mean(), xs.mean()
    edge = filled & ~ndimage.binary_erosion(filled)
    ey, ex = np.nonzero(edge)
    dy, dx = ey + 0.5 - (cy + 0.5), ex + 0.5 - (cx + 0.5)
    angle = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    radius = np.full(bins, np.nan)
    np.fmax.at(radius, angle, np.hypot(dx, dy) + 0.5)
    known = ~np.isnan(radius)
    if known.sum() < 3:
        return np.zeros(6)
    idx = np.arange(bins)
    radius = np.interp(idx, idx[known], radius[known], period=bins)
    spectrum = np.abs(np.fft.rfft(radius)) / bins
    return spectrum[1:7] / max(spectrum[0], 1e-9)


def _solidity(filled: np.ndarray) -> float:
    """Area over the area of the convex hull of the pixel squares' corners."""
    ys, xs = np.nonzero(filled & ~ndimage.binary_erosion(filled))
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull = ConvexHull(corners)
    except QhullError:
        return 1.0
    return float(filled.sum() / hull.volume)


__all__ = ["Detection", "Oracle", "OracleConfig", "Reading"]
