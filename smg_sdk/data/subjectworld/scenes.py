"""Scenes: where subjects go, the relations that hold, and the instruction that states them.

A scene places 1..6 subjects on the cells of a 3 x 3 anchor grid (with jitter), so boxes
never overlap. Its *relations* are derived from the placement and then written as an
instruction with ``<k>`` placeholders; :func:`parse_instruction` reads such an instruction
back, and :func:`relation_holds` is the one geometric test used both when sampling a scene
(every stated relation holds with a margin) and when scoring a generated image.

Instruction grammar (``<k>`` is subject k; sizes are stated at a subject's first mention)::

    clause (", " clause)* " on " background
    clause := "a " size " <i> " where                     (one subject: absolute position)
            | "a " size " <i> " rel " a " size " <j>"     (first relation)
            | "a " size " <i> " rel " <j>"                 (later relations)
            | "a " size " <i> between <j> and <k>"
    where  := "in the center" | "on the left" | "on the right" | "at the top" | "at the bottom"
            | "in the top left corner" | ... (four corners)
    rel    := "left of" | "right of" | "above" | "below"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from ...types import PLACEHOLDER
from .identities import Identity
from .vocab import BACKGROUNDS, SIZES

ANCHORS = (1 / 6, 1 / 2, 5 / 6)
"""Centres of the 3 x 3 anchor cells, as fractions of the image side."""

WHERE: dict[tuple[int, int], str] = {
    (1, 1): "in the center", (1, 0): "on the left", (1, 2): "on the right",
    (0, 1): "at the top", (2, 1): "at the bottom",
    (0, 0): "in the top left corner", (0, 2): "in the top right corner",
    (2, 0): "in the bottom left corner", (2, 2): "in the bottom right corner",
}
"""Absolute positions by anchor cell (row, col)."""

RELATIONS = ("left of", "right of", "above", "below")
MARGIN = 0.12
"""A relation holds when centres differ by more than this fraction of the side."""


@dataclass(frozen=True)
class Relation:
    """``kind`` is a :data:`RELATIONS` word, ``"between"``, or a :data:`WHERE` phrase;
    ``subjects`` are 1-based subject numbers (1, 2 or 3 of them)."""

    kind: str
    subjects: tuple[int, ...]


@dataclass(frozen=True)
class PlacedSubject:
    """A subject in a scene: identity, size word, box ``(x0, y0, x1, y1)`` px, rotation in degrees."""

    identity: Identity
    size: str
    box: tuple[int, int, int, int]
    rotation: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


@dataclass(frozen=True)
class Scene:
    """Background, placed subjects (subject k is ``subjects[k-1]``), relations, image side in px."""

    background: str
    subjects: tuple[PlacedSubject, ...]
    relations: tuple[Relation, ...]
    side: int = 128


def relation_holds(relation: Relation, centres: dict[int, tuple[float, float]], side: int) -> bool:
    """Whether ``relation`` holds for subject centres ``{k: (x, y)}`` in an image of ``side`` px."""
    m = MARGIN * side
    pts = [centres.get(k) for k in relation.subjects]
    if any(p is None for p in pts):
        return False
    (ax, ay) = pts[0]
    if relation.kind == "between":
        (bx, by), (cx, cy) = pts[1], pts[2]
        on_x = min(bx, cx) + m < ax < max(bx, cx) - m
        on_y = min(by, cy) + m < ay < max(by, cy) - m
        return on_x or on_y
    if relation.kind in RELATIONS:
        bx, by = pts[1]
        return {"left of": ax + m < bx, "right of": ax > bx + m, "above": ay + m < by, "below": ay > by + m}[
            relation.kind
        ]
    row, col = next(cell for cell, phrase in WHERE.items() if phrase == relation.kind)
    lo, hi = side * (0.5 - MARGIN), side * (0.5 + MARGIN)
    ok_x = ax < lo if col == 0 else ax > hi if col == 2 else lo < ax < hi
    ok_y = ay < lo if row == 0 else ay > hi if row == 2 else lo < ay < hi
    # "on the left" constrains only x; "at the top" only y; corners and centre both.
    return (ok_x or (col == 1 and row != 1)) and (ok_y or (row == 1 and col != 1))


def _box(cell: tuple[int, int], size: str, side: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    px = int(round(SIZES[size] * side))
    cx = ANCHORS[cell[1]] * side + rng.uniform(-0.03, 0.03) * side
    cy = ANCHORS[cell[0]] * side + rng.uniform(-0.03, 0.03) * side
    x0 = int(np.clip(round(cx - px / 2), 1, side - px - 1))
    y0 = int(np.clip(round(cy - px / 2), 1, side - px - 1))
    return x0, y0, x0 + px, y0 + px


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], gap: int = 2) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _relations(cells: list[tuple[int, int]], rng: np.random.Generator) -> tuple[Relation, ...]:
    """True relations that tie every subject to an earlier one (or an absolute place for one subject)."""
    if len(cells) == 1:
        return (Relation(WHERE[cells[0]], (1,)),)
    out = []
    for i in range(1, len(cells)):
        (ri, ci) = cells[i]
        pairs = [(j, k) for j in range(i) for k in range(j + 1, i)
                 if (cells[j][0] == cells[k][0] == ri and min(cells[j][1], cells[k][1]) < ci < max(cells[j][1], cells[k][1]))
                 or (cells[j][1] == cells[k][1] == ci and min(cells[j][0], cells[k][0]) < ri < max(cells[j][0], cells[k][0]))]
        if pairs and rng.random() < 0.5:
            j, k = pairs[int(rng.integers(len(pairs)))]
            out.append(Relation("between", (i + 1, j + 1, k + 1)))
            continue
        j = int(rng.integers(i))
        (rj, cj) = cells[j]
        options = [w for w, ok in (("left of", ci < cj), ("right of", ci > cj), ("above", ri < rj), ("below", ri > rj)) if ok]
        out.append(Relation(options[int(rng.integers(len(options)))], (i + 1, j + 1)))
    return tuple(out)


def sample_scene(identities: list[Identity], rng: np.random.Generator, side: int = 128) -> Scene:
    """A scene with ``identities`` (1..6) placed on distinct anchor cells, sizes and relations drawn by ``rng``."""
    n = len(identities)
    if not 1 <= n <= 6:
        raise DataError(f"A scene holds 1 to 6 subjects, got {n}.")
    sizes = list(SIZES) if n <= 2 else ["small", "medium"]
    for _ in range(100):
        flat = rng.choice(9, size=n, replace=False)
        cells = [(int(c) // 3, int(c) % 3) for c in flat]
        words = [sizes[int(rng.integers(len(sizes)))] for _ in range(n)]
        boxes = [_box(c, w, side, rng) for c, w in zip(cells, words)]
        if any(_overlaps(boxes[a], boxes[b]) for a in range(n) for b in range(a + 1, n)):
            continue
        placed = tuple(PlacedSubject(i, w, b) for i, w, b in zip(identities, words, boxes))
        relations = _relations(cells, rng)
        centres = {k + 1: p.centre for k, p in enumerate(placed)}
        if all(relation_holds(r, centres, side) for r in relations):
            background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
            return Scene(background, placed, relations, side)
    raise RuntimeError("Could not place the subjects without overlap; this is a bug in the placement.")


def instruction(scene: Scene) -> str:
    """The scene's instruction, e.g. ``"a small <1> left of a large <2> on sand"``."""
    said: set[int] = set()

    def name(k: int) -> str:
        if k in said:
            return f"<{k}>"
        said.add(k)
        return f"a {scene.subjects[k - 1].size} <{k}>"

    clauses = []
    for r in scene.relations:
        if r.kind == "between":
            a, b, c = r.subjects
            clauses.append(f"{name(a)} between {name(b)} and {name(c)}")
        elif r.kind in RELATIONS:
            clauses.append(f"{name(r.subjects[0])} {r.kind} {name(r.subjects[1])}")
        else:
            clauses.append(f"{name(r.subjects[0])} {r.kind}")
    return ", ".join(clauses) + f" on {scene.background}"


_NAME = rf"(?:a (small|medium|large) )?{PLACEHOLDER.pattern}"
_CLAUSES = [
    ("between", re.compile(rf"^{_NAME} between {_NAME} and {_NAME}$")),
    ("relation", re.compile(rf"^{_NAME} (left of|right of|above|below) {_NAME}$")),
    ("where", re.compile(rf"^{_NAME} ({'|'.join(WHERE.values())})$")),
]


@dataclass(frozen=True)
class ParsedInstruction:
    """What an instruction states: background, size word per subject, relations."""

    background: str
    sizes: dict[int, str]
    relations: tuple[Relation, ...]


def parse_instruction(text: str) -> ParsedInstruction:
    """Read an instruction written by :func:`instruction`; :class:`~smg_sdk.errors.DataError` (a ``ValueError``) if it is not one."""
    body, sep, background = text.rpartition(" on ")
    if not sep or background not in BACKGROUNDS:
        raise DataError(f"Not a SubjectWorld instruction (no ' on <background>'): {text!r}.")
    sizes: dict[int, str] = {}
    relations = []
    for clause in body.split(", "):
        for kind, pattern in _CLAUSES:
            m = pattern.match(clause)
            if m:
                break
        else:
            raise DataError(f"Not a SubjectWorld clause: {clause!r}.")
        g = m.groups()
        if kind == "relation":
            names, word = [(g[0], g[1]), (g[3], g[4])], g[2]
        elif kind == "where":
            names, word = [(g[0], g[1])], g[2]
        else:
            names, word = [(g[0], g[1]), (g[2], g[3]), (g[4], g[5])], "between"
        for size, k in names:
            if size:
                sizes[int(k)] = size
        relations.append(Relation(word, tuple(int(k) for _, k in names)))
    return ParsedInstruction(background, sizes, tuple(relations))


__all__ = [
    "ANCHORS", "MARGIN", "ParsedInstruction", "PlacedSubject", "RELATIONS", "Relation", "Scene", "WHERE",
    "instruction", "parse_instruction", "relation_holds", "sample_scene",
]
