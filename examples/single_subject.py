"""One subject, several instructions: the Squeeze-MLLM preset (MLLM + DLA + VAE identity).

    python examples/single_subject.py --out out/single_subject

Writes the reference, one image per prompt, and contact_sheet.png.
"""

from __future__ import annotations

from _common import out_dir, parser, subjects

from smg_sdk import SubjectPipeline
from smg_sdk.gallery import contact_sheet

PROMPTS = ["a photo of <1> on the beach", "<1> in a snowy forest", "a watercolor painting of <1>"]


def main() -> None:
    args = parser(__doc__.splitlines()[0], "out/single_subject").parse_args()
    out = out_dir(args.out)
    pipe = SubjectPipeline.from_preset("squeeze-tiny")
    [subject] = subjects(["dog"])
    subject.pil().resize((64, 64)).save(out / "reference.png")
    images, captions = [subject.pil()], ["reference"]
    for i, prompt in enumerate(PROMPTS):
        result = pipe(prompt, [subject], seed=args.seed, num_inference_steps=args.steps)
        result.images[0].save(out / f"result_{i}.png")
        images.append(result.images[0])
        captions.append(prompt.replace("<1>", subject.class_word or "it"))
        print(f"{prompt!r}: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in result.timings.items())}")
    contact_sheet(images, captions).save(out / "contact_sheet.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
