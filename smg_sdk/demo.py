"""``smg demo``: the main job on the embedded tiny preset, written as a small gallery."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from .atomic import atomic_folder
from .gallery import contact_sheet
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
    {"name": "no_subject", "prompt": "a red teapot on a wooden table", "subjects": [], "mode": "concat"},
    {"name": "one_subject", "prompt": "a photo of <1> on the beach", "subjects": [0], "mode": "concat"},
    {"name": "two_subjects", "prompt": "<1> to the left of <2> in a garden", "subjects": [0, 1], "mode": "concat"},
    {"name": "two_subjects_cached", "prompt": "<1> to the left of <2> in a garden", "subjects": [0, 1], "mode": "cached"},
    {"name": "three_subjects", "prompt": "<1>, <2> and <3> on a shelf", "subjects": [0, 1, 2], "mode": "cached"},
]


def _is_demo_gallery(folder: Path) -> bool:
    """A gallery an earlier smg demo wrote (before galleries carried an output marker)."""
    names = {p.name for p in folder.iterdir()}
    return {"index.json", "gallery.png"} <= names and all(n.endswith((".png", ".json")) for n in names)


def run_demo(out: str | Path = "smg-demo", steps: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Generate every job in :data:`JOBS` with the tiny preset; returns the gallery folder.

    The folder is written beside its destination and swapped into place when complete. An
    existing ``out`` is replaced only if it is an earlier demo gallery; anything else (a
    folder with other files, a file, the current or home folder) is refused with an SMGError.
    """
    from .pipeline import SubjectPipeline

    out = Path(out).expanduser().resolve()
    with atomic_folder(out, kind="demo", recognise=_is_demo_gallery) as staging:
        pipes = {mode: SubjectPipeline.from_preset("tiny", reference_mode=mode) for mode in ("concat", "cached")}
        subjects = [synthetic_subject(i) for i in range(3)]
        for i, subject in enumerate(subjects):
            subject.pil().save(staging / f"subject_{i + 1}_{subject.class_word}.png")
        index, images, captions = [], [], []
        for job in JOBS:
            pipe = pipes[job["mode"]]
            pipe.set_progress_bar_config(disable=not progress)
            result = pipe(job["prompt"], [subjects[i] for i in job["subjects"]], seed=seed, num_inference_steps=steps)
            file = f"{job['name']}.png"
            result.images[0].save(staging / file)
            images.append(result.images[0])
            captions.append(job["name"])
            index.append({**job, "file": file, "timings_s": {k: round(v, 4) for k, v in result.timings.items()}})
        contact_sheet(images, captions, columns=len(images)).save(staging / "gallery.png")
        (staging / "index.json").write_text(json.dumps(index, indent=2))
    return out
