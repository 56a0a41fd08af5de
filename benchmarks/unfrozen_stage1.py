"""Probe: is the frozen base what keeps the tiny preset's identity at 0-3 %? Stage 1 with the base unfrozen.

    python benchmarks/unfrozen_stage1.py --out runs/probe-unfrozen [--steps 3000] [--learning-rate 2e-4]
                                         [--budget-minutes 40] [--samples 32]

The ``reference-lora`` recipe's stage 1 (same samples: 4,096 reference -> target pairs of
training identities with 1-2 subjects, subject weight 4, 20 % of the prompts dropped; batch 8,
128 px; the subject LoRA of rank 16 on the reference tokens), except that every weight of the
transformer trains too, as a full fine-tune in the manner of FLUX.1 Kontext rather than a
LoRA on a frozen FLUX.1-dev. It starts from the shipped ``tiny`` preset's base. It is
resumable (rerun the same command) and prints the recipe's evaluation lines. At the end it
scores the newest checkpoint on ``--samples`` held-out requests per subject count (k = 1, 2)
with the ``tiny`` preset's guidance, and reads the attributes of the one-subject outputs
(``subjectworld_attributes.py``), to compare with the shipped preset's
(``python benchmarks/subjectworld_attributes.py``). A diagnostic, not a recipe: the issue's
stage 1 keeps the base frozen, as a user's FLUX.1-dev would be.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from smg_sdk.backends.flux.plugin import tiny_pipeline
from smg_sdk.backends.flux.recipes import _load_backend, _world_eval
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate, format_table
from smg_sdk.presets.tiny import SUBJECT_ADAPTER, TINY_GUIDANCE, tiny_flux_path
from smg_sdk.training.recipes import RecipeOptions, SubjectWorldSamples
from smg_sdk.training.trainer import FlowMatchingTrainer, TrainerConfig
from subjectworld_attributes import read_attributes


def unfrozen_pipeline():
    """The tiny preset's base with a fresh seeded subject LoRA, every transformer weight trainable."""
    backend = _load_backend(tiny_flux_path())
    torch.manual_seed(0)
    backend.add_stream_adapter(SUBJECT_ADAPTER, rank=16)
    pipe = tiny_pipeline(backend, adapter=SUBJECT_ADAPTER)
    pipe.defaults.update(TINY_GUIDANCE)
    backend.transformer.requires_grad_(True)
    return pipe


def train(pipe, out: Path, steps: int, learning_rate: float, budget_minutes: float) -> Path:
    """Stage 1 with the whole transformer trainable; returns the newest checkpoint folder."""
    options = RecipeOptions(out=str(out), eval_samples=8, caption_dropout=0.2, subject_weight=4.0)
    data = SubjectWorldSamples(SubjectWorld("train", "reference", 0, subjects=(1, 2)), 4096, 4.0, 0.2, 0)
    config = TrainerConfig(str(out / "checkpoints"), max_steps=steps, batch_size=8, learning_rate=learning_rate,
                           seed=0, height=128, width=128, guidance_scale=3.5, checkpoint_every=250,
                           cache_encodings=True, data=data.settings)
    trainable = dict(pipe.backend.transformer.named_parameters())
    trainer = FlowMatchingTrainer(pipe, trainable, data, config)
    trainer.train(resume=True, budget_minutes=budget_minutes, eval_every=250, log=print,
                  evaluate=lambda step: _world_eval(pipe, options, (1, 2), text_only=False),
                  history_file=str(out / "history.json"))
    return max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def load_checkpoint(pipe, checkpoint: Path) -> None:
    """The trained transformer (base and LoRA) weights of ``checkpoint`` into ``pipe``."""
    params = dict(pipe.backend.transformer.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(checkpoint / "trainable.safetensors")).items():
            params[name].copy_(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, history.json)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--budget-minutes", type=float, default=40)
    parser.add_argument("--samples", type=int, default=32, help="held-out requests per subject count at the end")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = unfrozen_pipeline()
    checkpoint = train(pipe, args.out, args.steps, args.learning_rate, args.budget_minutes)
    load_checkpoint(pipe, checkpoint)
    pipe.set_progress_bar_config(disable=True)
    config = WorldEvalConfig(str(checkpoint), (1, 2), args.samples, seed=0)
    print(format_table(evaluate(config, progress=False, examples_per_count=0, pipeline=pipe).payload))
    print(read_attributes(pipe, WorldEvalConfig("attributes", (1,), args.samples, seed=0), args.samples))


if __name__ == "__main__":
    main()
