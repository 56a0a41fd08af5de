"""SubjectWorld as MUSIC planner data: ground-truth CoT + layout, and the unseen relation combinations.

A SubjectWorld sample (:class:`smg_sdk.SubjectWorld`) knows everything the planner should
write: ``sample.cot`` (who each subject is, the relations, the sizes, the background) and
``sample.layout`` (the 8 x 8 grid of subject ids read off the target's masks).
:func:`music_sample` turns one into a :class:`~smg_plugins.music.data.MusicSample` (references,
instruction with ``<k>`` placeholders, CoT, layout, subject boxes as fractions of the image).

The CoT taught is SubjectWorld's followed by **where each subject goes** (:func:`placements`:
"<1> goes at the top left, <2> goes at the bottom centre."), the third-by-third cell of its
box centre. The plan format asks the CoT for "where each goes", and without it the layout is
the first place a position is decided: an instruction fixes positions only up to its relations,
so every cell's most likely id is 0, and a planner trained on SubjectWorld's CoT alone writes
all-zero grids at low temperature and scattered ones at the default (measured: 0 of 32 and 6 of
32 valid plans for 2-3 subjects after 800 steps). Deciding the place in a few words first leaves
the grid to draw.
:class:`WorldPlannerData` is a fixed, lazily rendered pool of them for
:mod:`~smg_plugins.music.training` (decimation is the trainer's ``decimation_probability``).

**Unseen relation combinations.** A scene with ``k >= 2`` subjects states ``k - 1`` relations,
each of a kind in ``left of``, ``right of``, ``above``, ``below``, ``between``. Its
*combination* is the set of kinds it uses (:func:`relation_kinds`). The combinations in
:data:`UNSEEN_PAIRS` are kept out of planner training: a scene whose kinds include both
``left of`` and ``below`` is never a training sample (each of the two is still seen, alone
and with every other kind). Only scenes with ``k >= 3`` can hold a pair, so the unseen set is
measured at ``k = 3, 4`` (about 13 % of 3-subject and 30 % of 4-subject scenes hold it). Decimation only
removes relations, so it never makes a held-out combination out of a training scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from smg_sdk import ConfigError, SubjectWorld

from .data import MusicSample

UNSEEN_PAIRS: tuple[frozenset[str], ...] = (frozenset({"left of", "below"}),)
"""Relation-kind pairs never seen together in planner training (see the module docstring)."""
COMBINATIONS = ("seen", "unseen", "any")


def relation_kinds(sample: Any) -> frozenset[str]:
    """The set of relation kinds a SubjectWorld sample's scene states (absolute places excluded)."""
    return frozenset(r.kind for r in sample.scene.relations if len(r.subjects) >= 2)


def is_unseen_combination(kinds: frozenset[str] | set[str]) -> bool:
    """Whether a set of relation kinds holds one of :data:`UNSEEN_PAIRS` (kept out of training)."""
    return any(pair <= set(kinds) for pair in UNSEEN_PAIRS)


ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")
"""Names of the thirds of the image a subject's box centre falls in (:func:`placements`)."""


def place_name(box: Sequence[float], side: float) -> str:
    """``"top left"`` ... ``"bottom right"``: the third-by-third cell holding the centre of ``box`` (px)."""
    x, y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    row, col = min(int(3 * y / side), 2), min(int(3 * x / side), 2)
    return f"{ROWS[row]} {COLS[col]}"


def placements(sample: Any) -> str:
    """Where each subject of a SubjectWorld sample goes: ``"<1> goes at the top left, <2> goes at ..."``."""
    side = float(sample.scene.side)
    clauses = [f"<{k}> goes at the {place_name(p.box, side)}" for k, p in enumerate(sample.scene.subjects, 1)]
    return ", ".join(clauses) + "."


def music_sample(sample: Any, reference: int = 0) -> MusicSample:
    """A SubjectWorld sample as a :class:`MusicSample`: reference ``reference`` of each subject, the
    instruction, the ground-truth CoT followed by :func:`placements`, the ``(8, 8)`` layout, boxes
    as ``(x0, y0, x1, y1)`` fractions.

    The target image is left out (the planner does not need it); ``extras`` holds the world
    index, split, subject count and relation kinds.
    """
    side = float(sample.scene.side)
    boxes = [tuple(v / side for v in placed.box) for placed in sample.scene.subjects]
    extras = {"world_index": sample.index, "split": sample.split, "relations": sorted(relation_kinds(sample))}
    cot = f"{sample.cot} {placements(sample)}"
    return MusicSample(sample.subjects(reference), sample.prompt, cot, sample.layout, boxes, None, extras)


@dataclass
class WorldPlannerData(Sequence):
    """``size`` SubjectWorld samples as :class:`MusicSample` s, chosen by ``combinations``.

    ``split``: ``"train"`` or ``"heldout"`` identities; ``subjects``: subject counts (1..6);
    ``combinations``: ``"seen"`` (no :data:`UNSEEN_PAIRS`: the training pool),
    ``"unseen"`` (only scenes holding one; needs a count >= 3) or ``"any"``. The accepted world
    indices are found once (scenes are rendered to read their relations); items are rendered
    again when read, so the pool costs no memory. Deterministic in every field.
    Raises :class:`~smg_sdk.ConfigError` for a bad setting.
    """

    size: int
    split: str = "train"
    subjects: Sequence[int] = (1, 2, 3, 4)
    combinations: str = "seen"
    seed: int = 0
    indices: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"WorldPlannerData size must be a positive integer, got {self.size!r}.")
        if self.combinations not in COMBINATIONS:
            raise ConfigError(f"WorldPlannerData combinations must be one of {', '.join(COMBINATIONS)}, "
                              f"got {self.combinations!r}.")
        self.subjects = tuple(int(k) for k in self.subjects)
        if self.combinations == "unseen" and max(self.subjects, default=0) < 3:
            raise ConfigError("combinations='unseen' needs a subject count >= 3 (a pair of relation kinds needs "
                              f"two relations); got subjects={self.subjects}.")
        self.world = SubjectWorld(split=self.split, kind="reference", seed=self.seed, subjects=self.subjects)
        self.indices = self._accepted()

    def _accepts(self, sample: Any) -> bool:
        if self.combinations == "any":
            return True
        return is_unseen_combination(relation_kinds(sample)) == (self.combinations == "unseen")

    def _accepted(self) -> list[int]:
        found: list[int] = []
        index, limit = 0, 1000 * self.size
        while len(found) < self.size:
            if index >= limit:
                raise ConfigError(f"Found only {len(found)} SubjectWorld scenes with {self.combinations} relation "
                                  f"combinations among the first {limit}; use other subject counts.")
            if self._accepts(self.world[index]):
                found.append(index)
            index += 1
        return found

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> MusicSample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("WorldPlannerData does not slice; index one item at a time.")
        return music_sample(self.world[self.indices[index]])

    def world_sample(self, index: int) -> Any:
        """The SubjectWorld sample behind item ``index`` (with its target, masks and scene)."""
        return self.world[self.indices[index]]


__all__ = ["COMBINATIONS", "UNSEEN_PAIRS", "WorldPlannerData", "is_unseen_combination", "music_sample",
           "place_name", "placements", "relation_kinds"]
