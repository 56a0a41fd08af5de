"""Train a reference LoRA for a few steps, save the pipeline, reload it, check it matches.

    python examples/train_adapter.py --out out/train_adapter [--train-steps 8]

The tiny FLUX preset gets a stream adapter that acts on the reference tokens only
(cached mode: it runs in the reference's own pass). The trainer is smg-sdk's generic
flow-matching trainer: checkpoints in <out>/checkpoints, resumable. Writes before/after
images, the saved pipeline in <out>/pipeline, and contact_sheet.png.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import out_dir, parser, subjects

from smg_sdk import SubjectPipeline
from smg_sdk.gallery import contact_sheet
from smg_sdk.plugins import get_registry
from smg_sdk.training import FlowMatchingTrainer, TrainerConfig, TrainingSample

ADAPTER = "my-subject"


def main() -> None:
    p = parser(__doc__.splitlines()[0], "out/train_adapter")
    p.add_argument("--train-steps", type=int, default=8)
    args = p.parse_args()
    out = out_dir(args.out)

    pipe = SubjectPipeline.from_preset("tiny", reference_mode="cached", position="omini")
    torch.manual_seed(args.seed)
    pipe.backend.add_stream_adapter(ADAPTER, rank=4, init_lora_weights="gaussian")
    # route the LoRA to the reference stream: a reference encoder built with it (saved with its options)
    pipe.encoders[1] = get_registry().build("encoder", "vae-reference", mode="cached", position="omini",
                                            adapter=ADAPTER)

    refs = subjects(["dog", "cat"])
    data = [TrainingSample([s], "a photo of <1>", s.pil()) for s in refs]  # learn to reproduce the reference
    prompt, call = "a photo of <1>", dict(seed=args.seed, num_inference_steps=args.steps)
    before = pipe(prompt, [refs[0]], **call).images[0]

    config = TrainerConfig(output_dir=str(out / "checkpoints"), max_steps=args.train_steps, learning_rate=1e-2,
                           checkpoint_every=max(1, args.train_steps // 2), seed=args.seed)
    trainer = FlowMatchingTrainer(pipe, pipe.backend.adapter_parameters(ADAPTER), data, config)
    loss_before = trainer.evaluate(data)
    result = trainer.train()
    loss_after = trainer.evaluate(data)
    print(f"loss on the training samples: {loss_before:.4f} -> {loss_after:.4f} ({result.last_step} steps)")

    after = pipe(prompt, [refs[0]], **call).images[0]
    pipe.save_pretrained(out / "pipeline")
    reloaded = SubjectPipeline.from_pretrained(out / "pipeline")
    again = reloaded(prompt, [refs[0]], **call).images[0]
    same = np.array_equal(np.asarray(after), np.asarray(again))
    print(f"saved to {out / 'pipeline'}; reloaded pipeline gives the same image: {same}")
    if not same:
        raise SystemExit("the reloaded pipeline does not reproduce the trained one")
    for name, image in (("reference", refs[0].pil()), ("before", before), ("after", after)):
        image.resize((64, 64)).save(out / f"{name}.png")
    contact_sheet([refs[0].pil(), before, after], ["reference", "before training", "after training"]).save(
        out / "contact_sheet.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
