"""SubjectWorld metrics: one generated image scored against what its request asked for.

Every metric is a number in [0, 1] per image (a mean over its subjects or its checks):

========== =====================================================================================
identity    subjects drawn with every attribute of their reference (shape, body colour, pattern,
            pattern colour)
instruction stated facts that hold: background, each relation between subject centres, each size
omission    subjects with no drawn subject of their class (lower is better)
blending    subjects drawn with another subject's colour or pattern that they do not have
            themselves (lower is better; 0 with one subject)
copy_paste  subjects drawn at their reference's size and place rather than the instruction's, or an
            image on a reference's background instead of the asked one (lower is better)
similarity  share of attributes (of 4) agreeing with the reference, 0 when omitted: a graded
            score in the spirit of DINO / CLIP-I
========== =====================================================================================

Drawn subjects are matched to requested ones by an optimal assignment (scipy's
``linear_sum_assignment``) that only pairs a drawn subject with a requested one of the same class
and prefers agreeing attributes, then nearby centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.subjectworld.identities import Identity
from ..data.subjectworld.scenes import Relation, parse_instruction, relation_holds
from ..data.subjectworld.vocab import SIZES
from ..data.subjectworld.world import WorldSample
from ..errors import DataError
from .oracle import Detection, Oracle, Reading

METRICS = ("identity", "instruction", "omission", "blending", "copy_paste", "similarity")
"""Metric names, in report order."""

LOWER_IS_BETTER = frozenset({"omission", "blending", "copy_paste"})

ATTRIBUTES = ("shape", "body", "pattern", "pattern_colour")

_EXTENT = {"circle": 0.92, "ring": 0.98, "square": 0.70, "triangle": 0.866, "star": 0.951, "cross": 0.95,
           "diamond": 1.0, "moon": 0.95}
"""Half the larger side of each upright shape's box, as a share of its sprite (see render.py)."""


@dataclass
class SceneTruth:
    """What a request asks for: background, identities (subject k is ``identities[k-1]``), sizes,
    relations, image side; and where each subject's reference shows it (for copy-paste)."""

    background: str
    identities: list[Identity]
    sizes: dict[int, str]
    relations: tuple[Relation, ...]
    side: int
    reference_boxes: list[tuple[int, int, int, int]] | None = None
    reference_backgrounds: list[str] | None = None

    @classmethod
    def from_sample(cls, sample: WorldSample) -> "SceneTruth":
        scene = sample.scene
        refs = [r[0] for r in sample.reference_scenes] if sample.reference_scenes else None
        return cls(
            scene.background, sample.identities, {k: p.size for k, p in enumerate(scene.subjects, 1)},
            scene.relations, scene.side,
            [r.subjects[0].box for r in refs] if refs else None, [r.background for r in refs] if refs else None,
        )

    @classmethod
    def from_request(cls, prompt: str, references: list, side: int, oracle: Oracle) -> "SceneTruth":
        """Read the truth off a request alone: the instruction is parsed, each reference read by the oracle.

        Raises :class:`~smg_sdk.errors.DataError` (a ``ValueError``) if the prompt is not a SubjectWorld instruction or a reference shows
        no readable subject."""
        parsed = parse_instruction(prompt)
        identities, boxes, backgrounds = [], [], []
        for k, image in enumerate(references, 1):
            reading = oracle.read(image)
            if not reading.subjects or reading.subjects[0].identity() is None:
                raise DataError(f"Reference {k} shows no subject the oracle can read; SubjectWorld references show one subject.")
            identities.append(reading.subjects[0].identity())
            boxes.append(reading.subjects[0].box)
            backgrounds.append(reading.background)
        return cls(parsed.background, identities, parsed.sizes, parsed.relations, side, boxes, backgrounds)


def _agreement(identity: Identity, detection: Detection) -> int:
    read = detection.identity()
    if read is None:
        return int(identity.shape == detection.shape) + int(identity.body == detection.body)
    return sum(getattr(identity, a) == getattr(read, a) for a in ATTRIBUTES)


def match(truth: SceneTruth, reading: Reading) -> list[Detection | None]:
    """The drawn subject matched to each requested subject (None where none of its class is drawn)."""
    n, m = len(truth.identities), len(reading.subjects)
    if m == 0:
        return [None] * n
    cost = np.full((n, m), 1e6)
    for i, identity in enumerate(truth.identities):
        for j, det in enumerate(reading.subjects):
            if det.shape == identity.shape:
                cost[i, j] = -10.0 * _agreement(identity, det)
    rows, cols = linear_sum_assignment(cost)
    out: list[Detection | None] = [None] * n
    for i, j in zip(rows, cols):
        if cost[i, j] < 1e6:
            out[i] = reading.subjects[j]
    return _break_ties(truth, out)


def _relations_held(truth: SceneTruth, matched: list[Detection | None]) -> int:
    centres = {k: d.centre for k, d in enumerate(matched, 1) if d is not None}
    return sum(relation_holds(r, centres, truth.side) for r in truth.relations)


def _break_ties(truth: SceneTruth, matched: list[Detection | None]) -> list[Detection | None]:
    """Swap two same-class matches when that agrees as well with identities and better with relations
    (two drawn stars that look alike are told apart by where the instruction put them)."""
    for a in range(len(matched)):
        for b in range(a + 1, len(matched)):
            da, db = matched[a], matched[b]
            if da is None or db is None or da.shape != db.shape:
                continue
            ia, ib = truth.identities[a], truth.identities[b]
            swapped = list(matched)
            swapped[a], swapped[b] = db, da
            same = _agreement(ia, db) + _agreement(ib, da) >= _agreement(ia, da) + _agreement(ib, db)
            if same and _relations_held(truth, swapped) > _relations_held(truth, matched):
                matched = swapped
    return matched


def size_word(detection: Detection, side: int) -> str:
    """The size word (small / medium / large) nearest to the drawn subject's size, on a log scale."""
    sprite = detection.size / (2 * _EXTENT[detection.shape] / 2) / side
    return min(SIZES, key=lambda w: abs(math.log(sprite / SIZES[w])))


def _instruction(truth: SceneTruth, reading: Reading, matched: list[Detection | None]) -> float:
    checks = [reading.background == truth.background]
    centres = {k: d.centre for k, d in enumerate(matched, 1) if d is not None}
    checks += [relation_holds(r, centres, truth.side) for r in truth.relations]
    for k, word in truth.sizes.items():
        det = matched[k - 1] if k - 1 < len(matched) else None
        checks.append(det is not None and size_word(det, truth.side) == word)
    return float(np.mean(checks))


def _blended(identity: Identity, det: Detection, others: list[Identity]) -> bool:
    own_colours = {identity.body, identity.pattern_colour}
    other_colours = {c for o in others for c in (o.body, o.pattern_colour)} - own_colours - {None}
    if det.body in other_colours or det.pattern_colour in other_colours:
        return True
    other_patterns = {o.pattern for o in others} - {identity.pattern, "plain"}
    return det.pattern in other_patterns


def _copy_pasted(truth: SceneTruth, k: int, det: Detection, reading: Reading) -> bool:
    if truth.reference_boxes is None:
        return False
    if reading.background != truth.background and reading.background == truth.reference_backgrounds[k]:
        return True
    ref = truth.reference_boxes[k]
    ref_size, ref_centre = max(ref[2] - ref[0], ref[3] - ref[1]), ((ref[0] + ref[2]) / 2, (ref[1] + ref[3]) / 2)
    target_size = SIZES[truth.sizes.get(k + 1, "medium")] * truth.side * _EXTENT[det.shape]
    near_ref_size = abs(det.size - ref_size) < abs(det.size - target_size)
    cx, cy = det.centre
    near_ref_place = math.hypot(cx - ref_centre[0], cy - ref_centre[1]) < 0.1 * truth.side
    return near_ref_size and near_ref_place


def score(truth: SceneTruth, reading: Reading) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one image's ``reading`` against ``truth``."""
    matched = match(truth, reading)
    n = len(truth.identities)
    identity, blending, copy_paste, similarity = [], [], [], []
    for k, (ident, det) in enumerate(zip(truth.identities, matched)):
        if det is None:
            identity.append(0.0), blending.append(0.0), copy_paste.append(0.0), similarity.append(0.0)
            continue
        identity.append(float(det.identity() == ident))
        blending.append(float(_blended(ident, det, truth.identities[:k] + truth.identities[k + 1:])))
        copy_paste.append(float(_copy_pasted(truth, k, det, reading)))
        similarity.append(_agreement(ident, det) / len(ATTRIBUTES))
    return {
        "identity": float(np.mean(identity)) if n else 1.0,
        "instruction": _instruction(truth, reading, matched),
        "omission": float(np.mean([d is None for d in matched])) if n else 0.0,
        "blending": float(np.mean(blending)) if n else 0.0,
        "copy_paste": float(np.mean(copy_paste)) if n else 0.0,
        "similarity": float(np.mean(similarity)) if n else 1.0,
    }


__all__ = ["ATTRIBUTES", "LOWER_IS_BETTER", "METRICS", "SceneTruth", "match", "score", "size_word"]
