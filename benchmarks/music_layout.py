"""What MUSIC's layout rule does on the tiny preset: no plan, the true layout, the heuristic plan with and without its CoT.

    python benchmarks/music_layout.py [--samples 64] [--subjects 3,4] [--layout-mode hard|soft]

Held-out SubjectWorld requests (seed 0, the preset's default steps, request i generated with seed
i), scored by the oracle with the metrics of ``smg eval subjectworld`` (mean and 95 % bootstrap
interval). Rows:

- ``no plan``: the ``tiny`` preset;
- ``true layout``: ``music-layout`` given each request's ground-truth 8 x 8 layout as its plan (an
  ideal planner: what the layout rule can do when the plan is exactly right);
- ``heuristic, CoT in prompt``: the ``music-heuristic`` plan with its chain of thought appended
  to the prompt the encoders see (the planner's own default);
- ``heuristic, no CoT``: the same plan, the prompt left as it is (``music-tiny``'s default).

The layout rule, the verifier and the base are those of ``music-tiny``; one candidate per request.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from smg_sdk import Plan, SubjectPipeline, SubjectWorld, ci95, get_registry
from smg_sdk.eval.oracle import Oracle
from smg_sdk.eval.world_metrics import SceneTruth, score
from smg_sdk.interfaces import Planner
from smg_plugins.music.preset import with_music

METRICS = ("instruction", "omission", "blending", "identity", "similarity")


class TrueLayoutPlanner(Planner):
    """Plans the layout it is told: ``layout`` is set to the current request's ground truth."""

    layout: np.ndarray | None = None

    def plan(self, request, num_plans, generator=None):
        return [Plan(cot="the ground-truth layout", layout=torch.as_tensor(self.layout))] * num_plans


def pipelines(layout_mode: str, truth: TrueLayoutPlanner) -> dict[str, SubjectPipeline]:
    registry = get_registry()
    tiny = SubjectPipeline.from_preset("tiny")

    def music(planner) -> SubjectPipeline:
        return with_music(tiny, planner, registry.build("verifier", "clip-text"), layout_mode)

    return {"no plan": tiny, "true layout": music(truth),
            "heuristic, CoT in prompt": music(registry.build("planner", "music-heuristic", cot_in_prompt=True)),
            "heuristic, no CoT": music(registry.build("planner", "music-heuristic", cot_in_prompt=False))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--subjects", default="3,4")
    parser.add_argument("--layout-mode", choices=("hard", "soft"), default="hard")
    args = parser.parse_args()
    torch.set_num_threads(1)
    truth, oracle = TrueLayoutPlanner(), Oracle()
    rows = pipelines(args.layout_mode, truth)
    print(f"{args.samples} held-out requests per count, seed 0; mean [95 % interval]")
    print("k  row                       " + "  ".join(f"{m:<18}" for m in METRICS))
    for k in (int(v) for v in args.subjects.split(",")):
        world = SubjectWorld(split="heldout", kind="reference", seed=0, subjects=(k,), side=128)
        for name, pipe in rows.items():
            pipe.set_progress_bar_config(disable=True)
            scores = []
            for i in range(args.samples):
                sample = world[i]
                truth.layout = sample.layout
                image = pipe(sample.prompt, sample.subjects(), height=128, width=128, seed=i).images[0]
                scores.append(score(SceneTruth.from_sample(sample), oracle.read(image)))
            cells = []
            for m in METRICS:
                values = [s[m] for s in scores]
                lo, hi = ci95(values)
                cells.append(f"{np.mean(values):.3f} [{lo:.2f},{hi:.2f}]")
            print(f"{k}  {name:<25} " + "  ".join(f"{c:<18}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
