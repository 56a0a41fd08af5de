"""Per-attribute reading of the tiny preset's one-subject outputs (what the oracle sees, before matching).

    python benchmarks/subjectworld_attributes.py [--flux RUN/flux --adapter RUN/adapter/pytorch_lora_weights.safetensors]
                                                 [--true-cfg S] [--negative-references keep|drop] [--samples 32]
                                                 [--split heldout|train]

Held-out one-subject requests (seed 0, the preset's default steps, the seeds `smg eval
subjectworld` uses; ``--split train``: requests of training identities instead, those the subject
adapter learned from). For the largest subject the oracle reads in each output: is anything
detected, is its shape the requested class, is its body colour the reference's or the class's
typical colour, is its pattern the reference's, is it the requested identity whole (shape, body
colour and pattern: ``identity``), is it the class's typical identity (``prior``); and is the
background the asked one. ``--no-references`` prompts with the caption alone
(``--describe``: naming the identity in full), so "reference" means the requested identity. Chance is
1/8 for shape, 1/11 for body colour, 1/4 for pattern. ``--flux``/``--adapter`` read a training
run's files instead of the shipped preset; ``--true-cfg S`` guides against the empty prompt
(1: no guidance; default: the pipeline's own setting), ``--negative-references drop`` drops the
references from the negative branch.
"""

import argparse

import numpy as np
import torch

from smg_sdk import SubjectPipeline
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.data.subjectworld.identities import typical_identity
from smg_sdk.eval.oracle import Oracle
from smg_sdk.eval.world_eval import WorldEvalConfig, _generator


def pipeline(flux: str | None, adapter: str | None) -> SubjectPipeline:
    if flux is None:
        return SubjectPipeline.from_preset("tiny")
    from smg_sdk.backends.flux import plugin
    from smg_sdk.backends.flux.recipes import _load_backend

    backend = _load_backend(flux)
    if adapter:
        backend.load_stream_adapter("subject", adapter)
    return plugin.tiny_pipeline(backend, adapter="subject" if adapter else None)


def read_attributes(pipe: SubjectPipeline, config: WorldEvalConfig, samples: int,
                    split: str = "heldout") -> dict[str, float]:
    """Per attribute, the share of ``samples`` one-subject outputs of ``pipe`` that have it (see the module
    docstring); generated with the prompts, seeds and guidance of ``smg eval subjectworld`` under ``config``,
    on requests whose identities come from ``split`` (``heldout``, or ``train``: those adapters train on)."""
    generate = _generator(config, pipe)  # the prompts, seeds and guidance of `smg eval subjectworld`
    oracle, world = Oracle(), SubjectWorld(split, "reference", config.seed, subjects=(1,), side=config.side)
    stats = {k: [] for k in ("detected", "shape", "body_ref", "body_typical", "pattern_ref", "identity", "background",
                                 "prior")}
    for i in range(samples):
        sample = world[i]
        ident = sample.identities[0]
        reading = oracle.read(generate(sample, i))
        drawn = reading.subjects[0] if reading.subjects else None
        stats["background"].append(reading.background == sample.scene.background)
        stats["detected"].append(drawn is not None)
        stats["shape"].append(drawn is not None and drawn.shape == ident.shape)
        stats["body_ref"].append(drawn is not None and drawn.body == ident.body)
        stats["body_typical"].append(drawn is not None and drawn.body == typical_identity(ident.shape).body)
        stats["pattern_ref"].append(drawn is not None and drawn.pattern == ident.pattern)
        stats["identity"].append(drawn is not None and drawn.identity() == ident)
        stats["prior"].append(drawn is not None and drawn.identity() == typical_identity(ident.shape))
    return {k: round(float(np.mean(v)), 3) for k, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flux", default=None, help="a FLUX folder (a run's OUT/flux); default: the shipped preset")
    parser.add_argument("--adapter", default=None, help="with --flux: the subject LoRA file")
    parser.add_argument("--true-cfg", type=float, default=None, help="true CFG scale against the empty prompt")
    parser.add_argument("--negative-references", choices=("keep", "drop"), default=None,
                        help="true CFG's negative branch keeps or drops the references")
    parser.add_argument("--no-references", action="store_true", help="text only: the caption, no references")
    parser.add_argument("--describe", action="store_true", help="with --no-references: the caption names each identity")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout",
                        help="identities of the requests: held-out, or the training split adapters learn from")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = pipeline(args.flux, args.adapter)
    pipe.set_progress_bar_config(disable=True)
    config = WorldEvalConfig("attributes", (1,), args.samples, seed=0, no_references=args.no_references,
                             describe=args.describe, true_cfg_scale=args.true_cfg,
                             negative_references=None if args.negative_references is None
                             else args.negative_references == "keep")
    print(read_attributes(pipe, config, args.samples, args.split))


if __name__ == "__main__":
    main()
