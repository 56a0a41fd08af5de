"""Three subjects with MUSIC: plan layouts, generate candidates, keep the best by a verifier.

    python examples/multi_subject.py --out out/multi_subject [--candidates 4]

Writes the chosen image, a contact sheet of every candidate with its score, each plan's
layout grid, and the plans as text. With the embedded tiny MLLM the planner falls back to the
heuristic layout (the notes say why); point ``--planner-model`` at a local Qwen2.5-VL folder
for real plans.
"""

from __future__ import annotations

import json

from _common import out_dir, parser, subjects

from smg_sdk import SubjectPipeline
from smg_sdk.gallery import contact_sheet

PROMPT = "<1> to the left of <2>, <3> above them"


def main() -> None:
    p = parser(__doc__.splitlines()[0], "out/multi_subject")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--planner-model", default=None, help="local MLLM folder for the planner (default: tiny)")
    args = p.parse_args()
    out = out_dir(args.out)
    options = {"model_path": args.planner_model} if args.planner_model else {}
    pipe = SubjectPipeline.from_preset("music-tiny", **options)
    refs = subjects(["dog", "backpack", "duck_toy"])
    result = pipe(PROMPT, refs, seed=args.seed, num_inference_steps=args.steps, num_candidates=args.candidates)
    result.images[0].save(out / "best.png")
    contact_sheet(result.images, [f"score {s:.3f}" for s in result.scores]).save(out / "contact_sheet.png")
    plans = []
    for i, plan in enumerate(result.plans):
        plan.grid_image(names=[s.class_word for s in refs]).save(out / f"plan_{i}.png")
        plans.append({"score": result.scores[i], "cot": plan.cot, "layout": plan.layout.tolist(),
                      "source": plan.notes.get("source"), "fallback_reason": plan.notes.get("fallback_reason")})
    (out / "plans.json").write_text(json.dumps(plans, indent=2, default=str))
    print(f"{len(result.images)} candidates, scores {[round(s, 3) for s in result.scores]}; "
          f"timings {', '.join(f'{k} {v:.2f} s' for k, v in result.timings.items())}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
