"""Reading spatial relations out of an instruction, for the heuristic planner.

Subjects are found as placeholders (``<2>``) or, when the prompt has none, by their class
words. The instruction is cut into clauses at ``,`` ``;`` ``.`` and "while"/"with"; in each
clause a relation phrase links the subjects before it (since the previous relation) to the
first subject after it. Understood phrases:

=====================================  =======================================
phrase                                  meaning for "A <phrase> B"
=====================================  =======================================
left of, to/on the left of              A left of B
right of, to/on the right of            B left of A
above, over, on top of                  A above B
below, under, underneath, beneath       B above A
next to, beside, near, alongside,       A left of B, adjacent (the order in the
close to, by                            sentence decides the side)
between B and C                         B left of A left of C
in front of                             A lower than B and drawn over it
behind, in back of                      A higher than B and drawn under it
=====================================  =======================================

Instead of a subject, B can be "them"/"both" (the subjects named earlier) or "all"/"the
others"/"everything"/"the rest" (every other subject). Anchors need no B: "in the top left
corner", "at the bottom right", "on the left", "at the top"... Size words right before a
subject ("small <3>", "a big <1>") scale it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from smg_sdk import PLACEHOLDER

LEFT, ABOVE, FRONT, NEAR = "left", "above", "front", "near"

# phrase tokens -> (kind, swap operands)
BINARY: dict[tuple[str, ...], tuple[str, bool]] = {
    ("to", "the", "left", "of"): (LEFT, False),
    ("on", "the", "left", "of"): (LEFT, False),
    ("left", "of"): (LEFT, False),
    ("to", "the", "right", "of"): (LEFT, True),
    ("on", "the", "right", "of"): (LEFT, True),
    ("right", "of"): (LEFT, True),
    ("on", "top", "of"): (ABOVE, False),
    ("above",): (ABOVE, False),
    ("over",): (ABOVE, False),
    ("below",): (ABOVE, True),
    ("under",): (ABOVE, True),
    ("underneath",): (ABOVE, True),
    ("beneath",): (ABOVE, True),
    ("in", "front", "of"): (FRONT, False),
    ("behind",): (FRONT, True),
    ("in", "back", "of"): (FRONT, True),
    ("next", "to"): (NEAR, False),
    ("close", "to"): (NEAR, False),
    ("beside",): (NEAR, False),
    ("near",): (NEAR, False),
    ("alongside",): (NEAR, False),
    ("by",): (NEAR, False),
}
BETWEEN = ("between",)
GROUP_EARLIER = {"them", "both"}
GROUP_ALL = {"all", "others", "everything", "everyone", "rest"}
CLAUSE_WORDS = {"while", "whereas", "with"}
HORIZONTAL = {"left": "left", "right": "right"}
VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
SIZE_WORDS = {
    "tiny": 0.5, "small": 0.65, "little": 0.65, "miniature": 0.5,
    "big": 1.35, "large": 1.35, "huge": 1.6, "giant": 1.6, "tall": 1.2,
}


@dataclass(frozen=True)
class Relation:
    """``a`` and ``b`` are 0-based subject indices; ``kind`` reads "a <kind> b" (left, above, front, near)."""

    kind: str
    a: int
    b: int

    def describe(self) -> str:
        words = {LEFT: "is left of", ABOVE: "is above", FRONT: "is in front of", NEAR: "is next to"}
        return f"<{self.a + 1}> {words[self.kind]} <{self.b + 1}>"


@dataclass(frozen=True)
class Anchor:
    """A subject pinned to a side or corner: ``horizontal`` left/right, ``vertical`` top/bottom."""

    subject: int
    horizontal: str | None = None
    vertical: str | None = None


@dataclass
class SpatialParse:
    """What the instruction says about placement."""

    relations: list[Relation] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    size_hints: dict[int, float] = field(default_factory=dict)
    mentions: list[int] = field(default_factory=list)


_TOKEN = re.compile(r"§\d+|[a-z]+|[,;.]")


def _normalise(prompt: str, class_words: Sequence[str | None]) -> str:
    """Lower-case text with each subject replaced by a ``§k`` token (k 0-based)."""
    if PLACEHOLDER.search(prompt):
        text = PLACEHOLDER.sub(lambda m: f" §{int(m.group(1)) - 1} ", prompt)
    else:
        text = prompt
        used: set[int] = set()
        order = sorted(range(len(class_words)), key=lambda k: -len(class_words[k] or ""))
        for k in order:
            word = class_words[k]
            if not word:
                continue
            pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
            match = pattern.search(text)
            if match and k not in used:
                text = text[: match.start()] + f" §{k} " + text[match.end() :]
                used.add(k)
    return text.lower().replace("-", " ")


def _clauses(tokens: list[str]) -> list[list[str]]:
    clauses, current = [], []
    for tok in tokens:
        if tok in (",", ";", ".") or tok in CLAUSE_WORDS:
            if current:
                clauses.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        clauses.append(current)
    return clauses


def _subject(tok: str) -> int | None:
    return int(tok[1:]) if tok.startswith("§") else None


def _match_phrase(clause: list[str], i: int) -> tuple[tuple[str, ...], str, bool] | None:
    for phrase in sorted(BINARY, key=len, reverse=True):
        if tuple(clause[i : i + len(phrase)]) == phrase:
            # "on the left" without "of" is an anchor, handled separately
            kind, swap = BINARY[phrase]
            return phrase, kind, swap
    return None


def _anchor_at(clause: list[str], i: int) -> tuple[int, str | None, str | None] | None:
    """An anchor phrase starting at ``i`` ("in the top left corner", "on the left"...):
    (tokens it takes, horizontal side, vertical side), or None."""
    j, end = i, len(clause)
    preposition = clause[j] in ("in", "at", "on", "to")
    if preposition:
        j += 1
        if j < end and clause[j] == "the":
            j += 1
    vertical = VERTICAL.get(clause[j]) if j < end else None
    j += vertical is not None
    horizontal = HORIZONTAL.get(clause[j]) if j < end else None
    j += horizontal is not None
    if vertical is None and horizontal is None:
        return None
    if j < end and clause[j] == "of":  # "to the left of X", "on top of X": relations, not anchors
        return None
    if not preposition and (vertical is None or horizontal is None):
        return None  # a bare "left" or "top" is too ambiguous; "top left" is fine
    while j < end and clause[j] in ("corner", "side", "edge", "half"):
        j += 1
    return j - i, horizontal, vertical


def parse_spatial(prompt: str, class_words: Sequence[str | None]) -> SpatialParse:
    """The relations, anchors and size hints of ``prompt`` for ``len(class_words)`` subjects."""
    n = len(class_words)
    tokens = _TOKEN.findall(_normalise(prompt, class_words))
    out = SpatialParse()
    earlier: list[int] = []
    last: list[int] = []  # the most recently named subject, as a one-element list

    def note(clause: list[str], j: int) -> int | None:
        k = _subject(clause[j])
        if k is None or not 0 <= k < n:
            return None
        if k not in out.mentions:
            out.mentions.append(k)
        if j > 0 and clause[j - 1] in SIZE_WORDS:
            out.size_hints[k] = SIZE_WORDS[clause[j - 1]]
        last[:] = [k]
        return k

    for clause in _clauses(tokens):
        pending: list[int] = []
        i = 0
        while i < len(clause):
            if _subject(clause[i]) is not None:
                k = note(clause, i)
                if k is not None:
                    pending.append(k)
                i += 1
                continue
            left = pending or list(last)
            if clause[i] == BETWEEN[0]:
                found = [j for j in range(i + 1, len(clause)) if _subject(clause[j]) is not None][:2]
                operands = [note(clause, j) for j in found]
                if len(found) == 2 and None not in operands:
                    for a in left:
                        out.relations += [Relation(LEFT, operands[0], a), Relation(LEFT, a, operands[1])]
                    pending = []
                    i = found[1] + 1
                else:
                    i += 1
                continue
            anchor = _anchor_at(clause, i)
            if anchor is not None:
                length, horizontal, vertical = anchor
                out.anchors += [Anchor(a, horizontal, vertical) for a in left]
                pending = []
                i += length
                continue
            match = _match_phrase(clause, i)
            if match is not None:
                phrase, kind, swap = match
                right, j = _right_operand(clause, i + len(phrase), n, left, earlier)
                if j is not None and _subject(clause[j]) is not None:
                    note(clause, j)
                for a in left:
                    for b in right:
                        if a != b:
                            out.relations.append(Relation(kind, b, a) if swap else Relation(kind, a, b))
                pending = []
                i = i + len(phrase) if j is None else j + 1
                continue
            i += 1
        earlier.extend(k for k in pending if k not in earlier)
        for rel in out.relations:
            for k in (rel.a, rel.b):
                if k not in earlier:
                    earlier.append(k)
    return out


def _right_operand(
    clause: list[str], start: int, n: int, left: list[int], earlier: list[int]
) -> tuple[list[int], int | None]:
    """The subjects a relation phrase points at, and the index of the token naming them."""
    for j in range(start, len(clause)):
        tok = clause[j]
        k = _subject(tok)
        if k is not None:
            return ([k] if 0 <= k < n else []), j
        if tok in GROUP_EARLIER:
            return [s for s in earlier if s not in left], j
        if tok in GROUP_ALL:
            return [s for s in range(n) if s not in left], j
        if _match_phrase(clause, j) is not None or _anchor_at(clause, j) is not None:
            break
    return [], None


__all__ = ["ABOVE", "Anchor", "FRONT", "LEFT", "NEAR", "Relation", "SpatialParse", "parse_spatial"]
