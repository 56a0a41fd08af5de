"""One picture per method plugin: references | baseline (the ``tiny`` preset) | the method | truth.

    python scripts/method_gallery.py [--out docs/method_gallery.png] [--steps N]

Each row is the first held-out SubjectWorld request (seed 0) of the subject count the method's
claim is about, generated with the seed ``smg eval subjectworld`` uses for it (0): Squeeze
(``squeeze-tiny``, DLA, one subject), MUSIC (``music-tiny`` with the heuristic plan, three
subjects), AlignGen (``aligngen-tiny``, one subject). The baseline row entry is the ``tiny``
preset (reference LoRA) on the same request. Nothing is picked by hand: change ``--index`` to see
another request.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from smg_sdk import SubjectPipeline, SubjectWorld
from smg_sdk.eval.world_eval import WorldEvalConfig, _generator
from smg_sdk.gallery import comparison_rows

METHODS = (("Squeeze (squeeze-tiny, DLA)", "squeeze-tiny", {}, 1),
           ("MUSIC (music-tiny, heuristic plan)", "music-tiny", {"planner": "music-heuristic"}, 3),
           ("AlignGen (aligngen-tiny)", "aligngen-tiny", {}, 1))
"""(label, preset, preset options, subject count) per row."""


def generate(preset: str, pipe: SubjectPipeline, sample, index: int, count: int, steps: int | None):
    """``pipe``'s output for ``sample`` as ``smg eval subjectworld`` makes it (its prompt, seed and guidance)."""
    return _generator(WorldEvalConfig(preset, (count,), 1, steps=steps), pipe)(sample, index)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/method_gallery.png")
    parser.add_argument("--index", type=int, default=0, help="which held-out request of each count")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: each preset's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    baseline = SubjectPipeline.from_preset("tiny")
    rows = []
    for label, preset, options, count in METHODS:
        sample = SubjectWorld(split="heldout", kind="reference", seed=0, subjects=(count,))[args.index]
        method = SubjectPipeline.from_preset(preset, **options)
        outputs = [(generate("tiny", baseline, sample, args.index, count, args.steps), "baseline: tiny"),
                   (generate(preset, method, sample, args.index, count, args.steps), preset), (sample.target, "truth")]
        rows.append((sample.references, outputs, f"{label}: {sample.prompt}"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    comparison_rows(rows).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
