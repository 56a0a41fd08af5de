"""``smg demo``: the main job on the embedded tiny preset, written as a small gallery."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from .atomic import atomic_folder
from .types import Subject

SHAPES = [("circle", (220, 60, 40)), ("square", (40, 120, 220)), ("triangle", (60, 180, 70))]


def synthetic_subject(index: int, size: int = 64) -> Subject:
    """A simple coloured shape on a light background: a stand-in subject that needs no files."""
    shape, colour = SHAPES[index % len(SHAPES)]
    image = Image.new("RGB", (size, size), (235, 232, 225))
    draw = ImageDraw.Draw(image)
    box = (size // 5, size // 5, size - size // 5, size - size // 5)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(size // 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    return Subject(image, shape)


JOBS = [
    {"name": "one_subject", "subjects": 1, "index": 0},
    {"name": "one_subject_b", "subjects": 1, "index": 1},
    {"name": "two_subjects", "subjects": 2, "index": 0},
    {"name": "two_subjects_b", "subjects": 2, "index": 1},
    {"name": "three_subjects", "subjects": 3, "index": 0},
    {"name": "text_only", "subjects": 2, "index": 2, "text_only": True},
]
"""Held-out SubjectWorld requests (identities the preset never trained on); ``text_only`` drops
the references and prompts with class words, to show the text prior."""


def _is_demo_gallery(folder: Path) -> bool:
    """A gallery an earlier smg demo wrote (before galleries carried an output marker)."""
    names = {p.name for p in folder.iterdir()}
    return {"index.json", "gallery.png"} <= names and all(n.endswith((".png", ".json")) for n in names)


def run_demo(out: str | Path = "smg-demo", steps: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Generate every job in :data:`JOBS` with the tiny preset; returns the gallery folder.

    Each row of ``gallery.png`` shows the references, the instruction, the output and the
    ground truth the instruction describes. The folder is written beside its destination and
    swapped into place when complete. An existing ``out`` is replaced only if it is an earlier
    demo gallery; anything else (a folder with other files, a file, the current or home
    folder) is refused with an SMGError.
    """
    from .data.subjectworld import SubjectWorld
    from .gallery import gallery_rows
    from .pipeline import SubjectPipeline

    out = Path(out).expanduser().resolve()
    with atomic_folder(out, kind="demo", recognise=_is_demo_gallery) as staging:
        pipe = SubjectPipeline.from_preset("tiny")
        pipe.set_progress_bar_config(disable=not progress)
        index, rows = [], []
        for job in JOBS:
            sample = SubjectWorld("heldout", seed=seed, subjects=(job["subjects"],))[job["index"]]
            text_only = job.get("text_only", False)
            prompt, subjects = (sample.caption, []) if text_only else (sample.prompt, sample.subjects())
            result = pipe(prompt, subjects, seed=seed, num_inference_steps=steps)
            file = f"{job['name']}.png"
            result.images[0].save(staging / file)
            for k, subject in enumerate(subjects, 1):
                subject.pil().save(staging / f"{job['name']}_ref{k}.png")
            shown = [] if text_only else [s.pil() for s in subjects]
            title = f"{prompt}   (no references: the text prior)" if text_only else prompt
            rows.append((shown, result.images[0], None if text_only else sample.target, title))
            index.append({**job, "prompt": prompt, "classes": [i.shape for i in sample.identities], "file": file,
                          "timings_s": {k: round(v, 4) for k, v in result.timings.items()}})
        gallery_rows(rows).save(staging / "gallery.png")
        (staging / "index.json").write_text(json.dumps(index, indent=2))
    return out
