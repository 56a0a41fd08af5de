"""``smg subjectworld export DIR``: SubjectWorld requests as files any tool can read.

The folder has DreamBench's original layout, so DreamBench tools (and
:func:`smg_sdk.eval.load_dreambench`) read it as they are, plus the multi-subject requests::

    DIR/
      images/<subject>/00.png ...   reference renders of each identity (different poses)
      prompts_and_classes.txt       DreamBench's format: classes, then two prompt lists
      targets/<index>.png           the ground-truth image of each request
      requests.jsonl                one request a line: prompt, subjects (name, class, reference
                                    files), target, background, layout (8 x 8), cot, aligned
"""

from __future__ import annotations

import json
from pathlib import Path

from ...atomic import atomic_folder
from .identities import Identity
from .scenes import PlacedSubject, Scene
from .world import SubjectWorld, render_scene, reference_scene


def subject_name(identity: Identity) -> str:
    """A folder-safe name for an identity, e.g. ``"star_red_stripes_yellow"``."""
    return identity.name.replace("/", "_").replace("_-", "")


def _prompt_lines(world: SubjectWorld, count: int = 25) -> list[str]:
    """DreamBench-style templates from one-subject instructions (``{0} {1}`` = token and class)."""
    single = SubjectWorld(world.split, "reference", world.seed, (1,), world.side)
    prompts: list[str] = []
    index = 0
    while len(prompts) < count:
        text = single[index].prompt.replace("<1>", "{0} {1}")
        if text not in prompts:
            prompts.append(text)
        index += 1
    return prompts


def _write_references(folder: Path, identity: Identity, world: SubjectWorld, index: int, views: int) -> list[str]:
    names = []
    rng = world.rng(index)
    anchor = Scene("sand", (PlacedSubject(identity, "medium", (44, 44, 84, 84)),), (), world.side)
    for view in range(views):
        scene = reference_scene(anchor.subjects[0], anchor, rng)
        file = folder / f"{view:02d}.png"
        from PIL import Image

        Image.fromarray(render_scene(scene)[0]).save(file)
        names.append(file.name)
    return names


def export(out: str | Path, samples: int = 100, split: str = "heldout", seed: int = 0,
           subjects: tuple[int, ...] = (1, 2, 3, 4), views: int = 4) -> Path:
    """Write ``samples`` requests of ``split`` to ``out`` (atomically; see the module docstring)."""
    world = SubjectWorld(split, "reference", seed, subjects)
    with atomic_folder(out, kind="subjectworld-export") as staging:
        (staging / "targets").mkdir()
        written: dict[Identity, list[str]] = {}
        with open(staging / "requests.jsonl", "w") as lines:
            for i in range(samples):
                sample = world[i]
                for identity in sample.identities:
                    if identity not in written:
                        folder = staging / "images" / subject_name(identity)
                        folder.mkdir(parents=True)
                        written[identity] = _write_references(folder, identity, world, 10_000_000 + len(written), views)
                sample.target.save(staging / "targets" / f"{i:05d}.png")
                lines.write(json.dumps({
                    "index": i, "prompt": sample.prompt, "caption": sample.caption,
                    "subjects": [{"name": subject_name(s), "class": s.shape,
                                  "references": [f"images/{subject_name(s)}/{f}" for f in written[s]]}
                                 for s in sample.identities],
                    "target": f"targets/{i:05d}.png", "background": sample.scene.background,
                    "layout": sample.layout.tolist(), "cot": sample.cot, "aligned": sample.aligned,
                }) + "\n")
        classes = "\n".join(f"{subject_name(i)},{i.shape}" for i in written)
        prompts = "\n".join(f"'{p}'.format(unique_token, class_token)," for p in _prompt_lines(world))
        (staging / "prompts_and_classes.txt").write_text(
            f"Classes\nsubject_name,class\n{classes}\n\nPrompts\n\nprompt_list = [\n{prompts}\n]\n\n"
            f"prompt_list = [\n{prompts}\n]\n"
        )
    return Path(out).expanduser().resolve()


__all__ = ["export", "subject_name"]
