"""SubjectWorld's vocabulary: shapes (class words), colours, patterns, backgrounds, sizes.

Everything an image of the world can show is named here, once. Colours are chosen so the
oracle can read them back: body and pattern colours are saturated (or white / black),
backgrounds are mid-tone and unsaturated, so a subject never melts into its background.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "ring", "square", "triangle", "star", "cross", "diamond", "moon")
"""Shapes; each one's name is its class word in instructions ("a star left of a ring")."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (250, 225, 20),
    "green": (30, 160, 50),
    "cyan": (20, 210, 230),
    "blue": (30, 70, 230),
    "purple": (130, 40, 190),
    "pink": (250, 120, 200),
    "white": (252, 252, 252),
    "black": (15, 15, 15),
    "brown": (120, 70, 20),
}
"""Body and pattern colours (sRGB 0..255)."""

PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
"""Surface patterns, drawn in the shape's own frame (they turn with it). Stripes cover about a
third of the shape and dots about a quarter, so the body colour is the majority; checks are
half and half, so a checked identity names its two colours in palette order."""

BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int] | None, str]] = {
    "sand": ((205, 185, 140), None, "flat"),
    "stone": ((140, 140, 140), None, "flat"),
    "sage": ((130, 170, 125), None, "flat"),
    "slate": ((85, 95, 125), None, "flat"),
    "tiles": ((180, 160, 195), (158, 138, 173), "grid"),
    "wood": ((170, 125, 100), (148, 105, 82), "planks"),
    "mist": ((150, 180, 195), (135, 163, 178), "weave"),
}
"""Backgrounds: base colour, texture colour (or None) and texture kind."""

SIZES: dict[str, float] = {"small": 0.26, "medium": 0.32, "large": 0.42}
"""Subject sizes as a fraction of the image side (the subject's bounding square)."""

TYPICAL: dict[str, tuple[str, str, str | None]] = {
    "circle": ("red", "plain", None),
    "ring": ("blue", "plain", None),
    "square": ("green", "plain", None),
    "triangle": ("orange", "plain", None),
    "star": ("yellow", "plain", None),
    "cross": ("white", "plain", None),
    "diamond": ("purple", "plain", None),
    "moon": ("cyan", "plain", None),
}
"""Each class word's typical identity (body colour, pattern, pattern colour): the text prior."""

__all__ = ["BACKGROUNDS", "COLOURS", "PATTERNS", "SHAPES", "SIZES", "TYPICAL"]
