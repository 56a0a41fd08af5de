"""Squeeze-MLLM + AlignGen + MUSIC in one pipeline, composed from registered names.

    python examples/compose_all.py --out out/compose_all [--candidates 2]

- AlignGen: S* before each concept word in the T5 prompt, rewritten by the DEM from Redux
  tokens; references through the VAE with a reference-only LoRA; the selective mask.
- Squeeze-MLLM: the MLLM reads the instruction with the references; DLA turns its layers
  into a second text-side stream; the multi-stage schedule hides the references early.
- MUSIC: plans a layout per candidate; the layout rule sends each region to its subject;
  a CLIP verifier keeps the best candidate.

Every component comes from a plugin by name; the plugins know nothing of each other. This
script builds the composition by hand, with the MLLM's aggregator fresh from its seed; the
``composed-tiny`` preset (``SubjectPipeline.from_preset("composed-tiny")``) composes the same
components with each plugin's SubjectWorld-trained weights.
"""

from __future__ import annotations

from _common import out_dir, parser, subjects

from smg_sdk import SubjectPipeline
from smg_sdk.gallery import contact_sheet
from smg_sdk.plugins import get_registry

PROMPT = "<1> next to <2> on the beach"


def build() -> SubjectPipeline:
    registry = get_registry()
    pipe = SubjectPipeline.from_preset("aligngen-tiny")  # tiny FLUX + AlignGen's encoders, DEM and rules
    mllm = registry.build("encoder", "squeeze-mllm", model="tiny", image_size=64)
    dla = registry.build("aggregator", "dla", num_layers=len(mllm.layers), in_dim=mllm.mllm.hidden_size,
                         out_dim=pipe.backend.text_width)
    return SubjectPipeline(
        pipe.backend,
        encoders=[*pipe.encoders, mllm],
        aggregators=[dla, *pipe.aggregators],
        rules=[*pipe.rules, registry.build("rule", "music-layout")],
        schedule=registry.build("schedule", "multistage"),
        planner=registry.build("planner", "music"),
        verifier=registry.build("verifier", "clip-text"),
        defaults=pipe.defaults,
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0], "out/compose_all")
    p.add_argument("--candidates", type=int, default=2)
    args = p.parse_args()
    out = out_dir(args.out)
    pipe = build()
    refs = subjects(["dog", "backpack"])
    result = pipe(PROMPT, refs, seed=args.seed, num_inference_steps=args.steps, num_candidates=args.candidates)
    result.images[0].save(out / "best.png")
    for i, plan in enumerate(result.plans):
        plan.grid_image(names=[s.class_word for s in refs]).save(out / f"plan_{i}.png")
    contact_sheet(result.images, [f"score {s:.3f}" for s in result.scores]).save(out / "contact_sheet.png")
    streams = sorted(result.trace[0]) if result.trace else []
    print(f"streams in the denoiser: {', '.join(streams)}")
    print(f"per-step weights: {result.trace}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
