"""MUSIC's automatic data pipeline, in miniature: references in, (instruction, CoT, layout,
target, boxes) out, with decimation augmentation.

The paper mines real multi-subject images (grounding, captioning, an MLLM writing the CoT).
Here the scene is composed, so every fact is known: each reference is pasted (mirrored, a
different "pose") into a random box of the target; relations are read off the boxes; the
instruction and the chain of thought are written from those facts with ``<k>`` placeholders;
the layout is the boxes rasterised on the grid (large first, small on top). SubjectWorld can
replace :func:`compose_scene` with its renderer and keep the rest.
"""

from __future__ import annotations

import random
from typing import Sequence

from PIL import Image

from smg_sdk import Subject

from .data import MusicSample, decimate
from .boxes import Box
from .heuristic import rasterize, region_words, size_word

BACKGROUND_COLOURS = ((236, 232, 220), (210, 228, 236), (222, 236, 212), (240, 226, 226))
"""RGB (0..255) fills the synthetic target scenes are composed on; one is drawn per sample."""


def _overlap(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def random_boxes(count: int, rng: random.Random, min_side: float = 0.18, max_side: float = 0.5) -> list[Box]:
    """``count`` boxes with random sizes, placed to overlap little (best of a few tries each)."""
    boxes: list[Box] = []
    for _ in range(count):
        best, best_cost = None, None
        for _ in range(30):
            side = rng.uniform(min_side, max_side)
            w, h = side * rng.uniform(0.8, 1.2), side * rng.uniform(0.8, 1.2)
            w, h = min(w, 0.95), min(h, 0.95)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            box = (x0, y0, x0 + w, y0 + h)
            cost = sum(_overlap(box, other) for other in boxes)
            if best_cost is None or cost < best_cost:
                best, best_cost = box, cost
            if cost == 0:
                break
        boxes.append(best)  # type: ignore[arg-type]
    return boxes


def compose_scene(references: Sequence[Image.Image], boxes: Sequence[Box], size: int = 64,
                  background: tuple[int, int, int] = BACKGROUND_COLOURS[0]) -> Image.Image:
    """The target: each reference mirrored and pasted into its box, large ones first."""
    target = Image.new("RGB", (size, size), background)
    order = sorted(range(len(boxes)), key=lambda k: -(boxes[k][2] - boxes[k][0]) * (boxes[k][3] - boxes[k][1]))
    for k in order:
        x0, y0, x1, y1 = (round(v * size) for v in boxes[k])
        w, h = max(1, x1 - x0), max(1, y1 - y0)
        patch = references[k].convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((w, h))
        target.paste(patch, (x0, y0))
    return target


def relations_from_boxes(boxes: Sequence[Box], margin: float = 0.05) -> list[tuple[int, str, int]]:
    """One relation per consecutive pair of subjects, read off the boxes: (a, phrase, b), 0-based."""
    out = []
    for a in range(len(boxes) - 1):
        b = a + 1
        ax, ay = (boxes[a][0] + boxes[a][2]) / 2, (boxes[a][1] + boxes[a][3]) / 2
        bx, by = (boxes[b][0] + boxes[b][2]) / 2, (boxes[b][1] + boxes[b][3]) / 2
        if abs(ax - bx) >= abs(ay - by) and abs(ax - bx) > margin:
            out.append((a, "to the left of" if ax < bx else "to the right of", b))
        elif abs(ay - by) > margin:
            out.append((a, "above" if ay < by else "below", b))
        else:
            out.append((a, "next to", b))
    return out


def _listing(count: int) -> str:
    tags = [f"<{k + 1}>" for k in range(count)]
    return tags[0] if count == 1 else ", ".join(tags[:-1]) + " and " + tags[-1]


def synthesize_sample(
    references: Sequence[Subject], rng: random.Random, size: int = 64, rows: int = 8, cols: int = 8
) -> MusicSample:
    """One composed multi-subject sample from ``references`` (their class words name them)."""
    n = len(references)
    boxes = random_boxes(n, rng)
    target = compose_scene([s.pil() for s in references], boxes, size, rng.choice(BACKGROUND_COLOURS))
    relations = relations_from_boxes(boxes)
    instruction = " ".join(
        [f"A photo of {_listing(n)}."] + [f"<{a + 1}> is {phrase} <{b + 1}>." for a, phrase, b in relations]
    )
    names = [s.class_word or f"subject {k + 1}" for k, s in enumerate(references)]
    lines = [", ".join(f"<{k + 1}> is the {name}" for k, name in enumerate(names)) + "."]
    if relations:
        lines.append(" ".join(f"<{a + 1}> is {phrase} <{b + 1}>." for a, phrase, b in relations))
    lines.append(" ".join(f"<{k + 1}> goes in {region_words(b)}, {size_word(b)}." for k, b in enumerate(boxes)))
    layout = rasterize(boxes, rows, cols)
    subjects = [Subject(s.image, s.class_word) for s in references]
    return MusicSample(subjects, instruction, "\n".join(lines), layout, boxes, target, {"source": "composed"})


def synthesize_dataset(
    pool: Sequence[Subject], count: int, seed: int = 0, min_subjects: int = 2, max_subjects: int = 4,
    decimation: bool = True, size: int = 64,
) -> list[MusicSample]:
    """``count`` composed samples drawing subjects from ``pool``, plus their decimations."""
    rng = random.Random(seed)
    out: list[MusicSample] = []
    for _ in range(count):
        n = rng.randint(min_subjects, min(max_subjects, len(pool)))
        sample = synthesize_sample(rng.sample(list(pool), n), rng, size)
        out.append(sample)
        if decimation:
            out.extend(decimate(sample))
    return out


__all__ = ["compose_scene", "random_boxes", "relations_from_boxes", "synthesize_dataset", "synthesize_sample"]
