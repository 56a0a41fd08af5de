"""MUSIC's training data: the sample format and subject-count decimation augmentation.

A :class:`MusicSample` is one (references, instruction, CoT, layout, target, subject boxes)
tuple. Instruction and CoT name subjects as ``<k>``; the layout holds ids ``1..n``; boxes are
``(x0, y0, x1, y1)`` fractions of the target. :func:`decimate` implements the paper's
augmentation: sort subjects by box area and drop the smallest, one at a time, down to two
subjects, renumbering every ``<k>`` in the instruction and CoT and every id in the layout so
all three keep naming the same subjects.

Text edits work on clauses (split at ``,`` ``;`` ``.``, new lines and "and"): a clause that
names the dropped subject goes, with its separator; a remaining subject no clause names any
more is mentioned again at the end ("..., with <2>"), since a prompt with placeholders must
name every subject. Layout cells of the dropped subject go to the next subject whose box
covers them (smallest first, the one drawn on top), else to 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from smg_sdk import (
    PLACEHOLDER,
    Plan,
    RequestError,
    Subject,
    TrainingSample,
    as_layout,
    atomic_folder,
    check_layout_subjects,
)

from .boxes import Box, box_area, box_contains

_SEPARATOR = re.compile(r"(\s*[,;.]\s*|\n\s*|\s+and\s+)")


@dataclass
class MusicSample:
    """One multi-subject training tuple (see the module docstring)."""

    subjects: list[Subject]
    instruction: str
    cot: str
    layout: torch.Tensor
    boxes: list[Box]
    target: Image.Image | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.subjects)
        self.layout = as_layout(self.layout)
        if len(self.boxes) != n:
            raise RequestError(f"A MusicSample needs one box per subject: {n} subjects, {len(self.boxes)} boxes.")
        self.boxes = [tuple(float(v) for v in box) for box in self.boxes]  # type: ignore[misc]
        for k, (x0, y0, x1, y1) in enumerate(self.boxes):
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise RequestError(f"Box {k + 1} {self.boxes[k]} is not (x0, y0, x1, y1) fractions with x0<x1, y0<y1.")
        for name in ("instruction", "cot"):
            wrong = sorted({int(k) for k in PLACEHOLDER.findall(getattr(self, name))} - set(range(1, n + 1)))
            if wrong:
                raise RequestError(f"The {name} names <{wrong[0]}> but the sample has {n} subjects.")
        check_layout_subjects(self.layout, n)

    @property
    def num_subjects(self) -> int:
        return len(self.subjects)

    def plan(self) -> Plan:
        """The plan this sample teaches (CoT + layout)."""
        return Plan(cot=self.cot, layout=self.layout.clone())

    def to_training_sample(self) -> TrainingSample:
        """The core's training sample (the generator's view); CoT, layout and boxes in ``extras``."""
        if self.target is None:
            raise RequestError("This sample has no target image; generator training needs one.")
        extras = {**self.extras, "cot": self.cot, "layout": self.layout.clone(), "boxes": list(self.boxes)}
        return TrainingSample(list(self.subjects), self.instruction, self.target, extras)


# ---------------------------------------------------------------------------------- text edits


def _clauses(text: str) -> list[str]:
    """``text`` as [clause, separator, clause, separator, ..., clause]."""
    parts = _SEPARATOR.split(text)
    # "between <a> and <b>": keep the "and" inside the clause
    merged: list[str] = [parts[0]]
    i = 1
    while i < len(parts):
        sep, clause = parts[i], parts[i + 1]
        if sep.strip() == "and" and re.search(rf"\bbetween\s*{PLACEHOLDER.pattern}\s*$", merged[-1]):
            merged[-1] = merged[-1] + sep + clause
        else:
            merged += [sep, clause]
        i += 2
    return merged


def drop_mentions(text: str, subject: int) -> str:
    """``text`` without the clauses naming ``<subject>`` (1-based), separators tidied.

    A clause that only ends a lead-in with the subject ("A photo of <1>", followed by
    ", <2> and <3>") hands its lead-in to the next clause instead of taking it along.
    """
    parts = _clauses(text)
    tag = f"<{subject}>"
    clauses = parts[0::2]
    if all(tag not in clause for clause in clauses):
        return text
    kept: list[tuple[int, str]] = []
    carry = ""
    for i, clause in enumerate(clauses):
        if tag not in clause:
            if clause.strip():
                kept.append((i, carry + clause))
            carry = ""
            continue
        head = clause.rstrip()
        lead_in = head[: -len(tag)] if head.endswith(tag) else None
        following = clauses[i + 1].lstrip() if i + 1 < len(clauses) else ""
        if lead_in and not PLACEHOLDER.search(lead_in) and following.startswith("<"):
            carry = lead_in
    out = ""
    for n, (i, clause) in enumerate(kept):
        if n:
            out += _strongest(parts[2 * kept[n - 1][0] + 1 : 2 * i : 2])
        out += clause
    out = out.strip()
    if out and text.rstrip().endswith(".") and not out.endswith("."):
        out += "."
    return out


def _strongest(separators: list[str]) -> str:
    """Of the separators that stood between two kept clauses, the one that binds least."""
    for mark in ("\n", ".", ";", ","):
        for sep in separators:
            if mark in sep:
                return sep
    return separators[-1] if separators else " "


def renumber(text: str, mapping: dict[int, int]) -> str:
    """Every ``<old>`` replaced by ``<mapping[old]>`` (1-based ids; unmapped ids kept)."""
    return PLACEHOLDER.sub(lambda m: f"<{mapping.get(int(m.group(1)), int(m.group(1)))}>", text)


def ensure_mentions(text: str, count: int) -> str:
    """``text`` naming every ``<1>..<count>`` (missing ones appended as ", with <k>")."""
    named = {int(k) for k in PLACEHOLDER.findall(text)}
    missing = [k for k in range(1, count + 1) if k not in named]
    if not missing:
        return text
    listed = " and ".join(f"<{k}>" for k in missing)
    body = text.rstrip().rstrip(".")
    return f"{body}, with {listed}." if body else f"{listed}."


# ---------------------------------------------------------------------------------- decimation


def drop_subject(sample: MusicSample, index: int) -> MusicSample:
    """``sample`` without subject ``index`` (0-based), ids renumbered everywhere."""
    n = sample.num_subjects
    if not 0 <= index < n:
        raise RequestError(f"Cannot drop subject {index + 1} of {n}.")
    dropped = index + 1
    mapping = {old: (old if old < dropped else old - 1) for old in range(1, n + 1) if old != dropped}
    keep = [k for k in range(n) if k != index]
    instruction = ensure_mentions(renumber(drop_mentions(sample.instruction, dropped), mapping), n - 1)
    cot = renumber(drop_mentions(sample.cot, dropped), mapping)

    layout = sample.layout.clone()
    rows, cols = layout.shape
    cells = (layout == dropped).nonzero().tolist()
    by_size = sorted(keep, key=lambda k: box_area(sample.boxes[k]))
    for r, c in cells:
        y, x = (r + 0.5) / rows, (c + 0.5) / cols
        cover = next((k for k in by_size if box_contains(sample.boxes[k], x, y)), None)
        layout[r, c] = 0 if cover is None else cover + 1
    relabel = torch.zeros(n + 1, dtype=torch.int64)
    for old, new in mapping.items():
        relabel[old] = new
    layout = relabel[layout]

    subjects = [replace(sample.subjects[k], index=None) for k in keep]
    extras = {**sample.extras, "decimated_from": sample.extras.get("decimated_from", n),
              "dropped": [*sample.extras.get("dropped", []), sample.subjects[index].class_word or f"subject {dropped}"]}
    return MusicSample(subjects, instruction, cot, layout, [sample.boxes[k] for k in keep], sample.target, extras)


def decimate(sample: MusicSample, min_subjects: int = 2) -> list[MusicSample]:
    """The paper's subject-count decimation: drop the smallest subject (by box area) one at a
    time down to ``min_subjects``; returns the new samples, largest count first.

    The target image is kept as it is (it still shows the dropped subjects): see
    ``extras["dropped"]``; a renderer that can redraw the scene (SubjectWorld) should
    re-render it.
    """
    if min_subjects < 1:
        raise RequestError("min_subjects must be at least 1.")
    out = []
    current = sample
    while current.num_subjects > min_subjects:
        smallest = min(range(current.num_subjects), key=lambda k: (box_area(current.boxes[k]), -k))
        current = drop_subject(current, smallest)
        out.append(current)
    return out


# ---------------------------------------------------------------------------------- files


def save_samples(samples: Sequence[MusicSample], folder: str | Path) -> Path:
    """Write samples as ``samples.jsonl`` + PNG images; the folder is replaced atomically."""
    folder = Path(folder).resolve()
    with atomic_folder(folder, kind="music samples", recognise=lambda f: (f / "samples.jsonl").is_file()) as staging:
        lines = []
        for i, s in enumerate(samples):
            refs = []
            for k, subject in enumerate(s.subjects):
                name = f"{i:05d}_ref{k + 1}.png"
                subject.pil().save(staging / name)
                refs.append({"image": name, "class_word": subject.class_word})
            target = None
            if s.target is not None:
                target = f"{i:05d}_target.png"
                s.target.save(staging / target)
            lines.append(json.dumps({
                "subjects": refs, "instruction": s.instruction, "cot": s.cot, "layout": s.layout.tolist(),
                "boxes": [list(b) for b in s.boxes], "target": target,
                "extras": {k: v for k, v in s.extras.items() if _jsonable(v)},
            }))
        (staging / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def load_samples(folder: str | Path) -> list[MusicSample]:
    """Samples written by :func:`save_samples`."""
    folder = Path(folder)
    index = folder / "samples.jsonl"
    if not index.is_file():
        raise RequestError(f"{folder} has no samples.jsonl; write it with save_samples().")
    out = []
    for line in index.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        subjects = [Subject(Image.open(folder / r["image"]).convert("RGB"), r["class_word"]) for r in row["subjects"]]
        target = Image.open(folder / row["target"]).convert("RGB") if row.get("target") else None
        out.append(MusicSample(subjects, row["instruction"], row["cot"], torch.tensor(row["layout"]),
                               [tuple(b) for b in row["boxes"]], target, row.get("extras", {})))
    return out


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


__all__ = [
    "MusicSample", "decimate", "drop_mentions", "drop_subject", "ensure_mentions", "load_samples", "renumber",
    "save_samples",
]
