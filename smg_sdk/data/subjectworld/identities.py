"""Identities (shape x body colour x pattern x pattern colour), the fixed split, class priors.

An identity is what a reference image shows and an instruction never says: the instruction
names only the class word (the shape). The split is fixed by a hash of the identity's name,
so it is the same on every machine and never depends on a seed: about 25 % of identities are
held out and appear only in evaluation draws. Each class's typical identity is always in the
training split (captions-only data draws it most of the time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...errors import DataError
from .vocab import COLOURS, PATTERNS, SHAPES, TYPICAL

HELD_OUT_PERCENT = 25
_ORDER = {name: i for i, name in enumerate(COLOURS)}
"""Share of identities (by hash) that never appear in training draws."""


@dataclass(frozen=True, order=True)
class Identity:
    """One subject's look. ``pattern_colour`` is None exactly when ``pattern == "plain"``."""

    shape: str
    body: str
    pattern: str = "plain"
    pattern_colour: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.body not in COLOURS or self.pattern not in PATTERNS:
            raise DataError(f"Not a SubjectWorld identity: {self}; shape, body and pattern must come from the vocabulary.")
        plain = self.pattern == "plain"
        if plain != (self.pattern_colour is None) or (
            not plain and (self.pattern_colour not in COLOURS or self.pattern_colour == self.body)
        ):
            raise DataError(f"Pattern colour of {self} must be None for plain, else another colour.")
        if self.pattern == "checks" and _ORDER[self.body] > _ORDER[self.pattern_colour]:
            raise DataError(f"Checks look the same either way round: name {self} with its colours in palette order.")

    @property
    def name(self) -> str:
        """A stable text name, e.g. ``"star/red/stripes/yellow"``."""
        return "/".join((self.shape, self.body, self.pattern, self.pattern_colour or "-"))

    def describe(self) -> str:
        """Plain English: ``"a red star with yellow stripes"``, ``"a plain blue ring"``."""
        if self.pattern == "plain":
            return f"a plain {self.body} {self.shape}"
        return f"a {self.body} {self.shape} with {self.pattern_colour} {self.pattern}"

    @property
    def held_out(self) -> bool:
        """True for identities kept out of every training draw."""
        if self == typical_identity(self.shape):
            return False
        digest = hashlib.sha256(self.name.encode()).digest()
        return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


def typical_identity(shape: str) -> Identity:
    """The identity captions-only data shows for ``shape`` most of the time."""
    body, pattern, pattern_colour = TYPICAL[shape]
    return Identity(shape, body, pattern, pattern_colour)


@lru_cache(maxsize=None)
def all_identities() -> tuple[Identity, ...]:
    """Every identity of the world, in a fixed order (8 shapes x (11 plain + 2 x 110 + 55 checks) = 2,288)."""
    out = []
    for shape in SHAPES:
        for body in COLOURS:
            out.append(Identity(shape, body))
            for pattern in PATTERNS[1:]:
                out += [Identity(shape, body, pattern, c) for c in COLOURS
                        if c != body and (pattern != "checks" or _ORDER[body] < _ORDER[c])]
    return tuple(out)


@lru_cache(maxsize=None)
def split_identities(split: str, shape: str | None = None) -> tuple[Identity, ...]:
    """Identities of ``split`` (``"train"`` or ``"heldout"``), optionally of one shape."""
    if split not in ("train", "heldout"):
        raise DataError(f"split must be 'train' or 'heldout', got {split!r}.")
    want_held = split == "heldout"
    return tuple(
        i for i in all_identities() if i.held_out == want_held and (shape is None or i.shape == shape)
    )


def draw_identity(rng: np.random.Generator, split: str, shape: str | None = None) -> Identity:
    """A uniform draw from ``split`` (of ``shape`` if given)."""
    pool = split_identities(split, shape)
    return pool[int(rng.integers(len(pool)))]


def draw_prior_identity(rng: np.random.Generator, shape: str, prior: float) -> Identity:
    """Captions-only draw: the typical identity with probability ``prior``, else a training one."""
    if rng.random() < prior:
        return typical_identity(shape)
    return draw_identity(rng, "train", shape)


__all__ = [
    "HELD_OUT_PERCENT", "Identity", "all_identities", "draw_identity", "draw_prior_identity",
    "split_identities", "typical_identity",
]
