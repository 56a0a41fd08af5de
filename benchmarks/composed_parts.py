"""Which part of Squeeze hurts the composition: its MLLM stream, or its multi-stage schedule?

    python benchmarks/composed_parts.py [--samples 32] [--subjects 1,2,3]

``composed-tiny`` with the schedules swapped: the full composition with the ``constant``
schedule (Squeeze's stream without its schedule), and the composition without Squeeze with the
``multistage`` schedule (Squeeze's schedule without its stream). Scored as ``smg eval
subjectworld`` scores (held-out requests, seed 0); compare with the claims table's composed rows
(``benchmarks/SUBJECTWORLD.md``), which have both parts or neither.
"""

from __future__ import annotations

import argparse

import torch

from smg_sdk import SubjectPipeline, get_registry
from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate, format_table


def with_schedule(pipe: SubjectPipeline, schedule: str) -> SubjectPipeline:
    """``pipe``'s components with the registered ``schedule`` instead of its own."""
    return SubjectPipeline(pipe.backend, pipe.encoders, pipe.aggregators, pipe.rules,
                           get_registry().build("schedule", schedule), pipe.planner, pipe.verifier,
                           defaults=pipe.defaults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--subjects", default="1,2,3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = tuple(int(k) for k in args.subjects.split(","))
    rows = {"composed, constant schedule (Squeeze's stream, not its schedule)":
            with_schedule(SubjectPipeline.from_preset("composed-tiny"), "constant"),
            "composed without Squeeze, multistage schedule (its schedule, not its stream)":
            with_schedule(SubjectPipeline.from_preset("composed-tiny", squeeze=False), "multistage")}
    for label, pipe in rows.items():
        pipe.set_progress_bar_config(disable=True)
        config = WorldEvalConfig(label, counts, args.samples, seed=0)
        print(format_table(evaluate(config, progress=False, examples_per_count=0, pipeline=pipe).payload), flush=True)


if __name__ == "__main__":
    main()
