"""``smg music-planner train|eval``: train the MUSIC planner on SubjectWorld and measure it.

Added to ``smg`` through the ``smg_register_commands`` hook: the planner is an MLLM trained on
plans, with options of its own, not an image recipe of ``smg train subjectworld`` (registry kind
``recipe``). Heavy modules are imported inside the handlers.

``train`` trains the planner (the whole tiny Qwen2.5-VL by default) on SubjectWorld's
training identities with the unseen relation combinations left out
(:mod:`~smg_plugins.music.world_data`), resumable from ``--out``; ``eval`` prints the
valid-plan rate and the layout agreement of a planner folder (:mod:`~smg_plugins.music.planner_eval`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smg_sdk import RequestError, SMGError

def parse_counts(text: str) -> tuple[int, ...]:
    """``--subjects``: subject counts in 1..6 separated by commas; :class:`~smg_sdk.RequestError` otherwise."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= k <= 6 for k in counts):
        raise RequestError(f"--subjects must be subject counts in 1..6 separated by commas (e.g. 1,2,3,4), got {text!r}.")
    return counts


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RequestError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")


def cmd_train(args: argparse.Namespace) -> int:
    """Train the planner on SubjectWorld (resumable; ``--budget-minutes`` stops after a checkpoint)."""
    _positive(args, "steps", "batch_size", "pool_size", "threads", "eval_every", "eval_samples", "image_size")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise RequestError(f"--budget-minutes must be > 0, got {args.budget_minutes}.")
    if not 0 <= args.decimation <= 1:
        raise RequestError(f"--decimation must be a probability in [0, 1], got {args.decimation}.")
    if not 0 < args.learning_rate < 1:
        raise RequestError(f"--learning-rate must be in (0, 1), e.g. 1e-3; got {args.learning_rate}.")
    out = Path(args.out).expanduser()
    if not args.resume and out.is_dir() and any(p.name.startswith("checkpoint-") for p in out.iterdir()):
        raise SMGError(f"--out {args.out} already holds checkpoints of a run; pass --resume to continue it, "
                       "or choose a new folder.")
    import torch

    from .training import PlannerTrainingConfig, train_planner
    from .world_data import WorldPlannerData

    torch.set_num_threads(args.threads)
    counts = parse_counts(args.subjects)
    config = PlannerTrainingConfig(
        str(out), train=args.mode, max_steps=args.steps, learning_rate=args.learning_rate, batch_size=args.batch_size,
        decimation_probability=args.decimation, seed=args.seed, checkpoint_every=args.checkpoint_every,
        progress=not args.quiet, eval_every=args.eval_every, image_size=args.image_size,
    )
    data = WorldPlannerData(args.pool_size, "train", counts, "seen", seed=args.seed)
    held = WorldPlannerData(args.eval_samples, "heldout", counts, "seen", seed=args.seed + 1)
    _, result = train_planner(data, config, model_path=args.start_from, eval_set=list(held),
                              resume=args.resume, budget_minutes=args.budget_minutes)
    folder = out / ("planner" if args.mode == "full" else "adapter")
    print(f"step {result.last_step} of {args.steps}; wrote {folder.resolve()}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Valid-plan rate and layout agreement of a planner on held-out SubjectWorld requests."""
    _positive(args, "samples", "batch_size", "threads", "image_size")
    import torch

    from .planner_eval import PlannerEvalConfig, evaluate_planner, format_report

    torch.set_num_threads(args.threads)
    config = PlannerEvalConfig(
        model_path=args.planner, adapter_path=args.adapter, samples=args.samples, subjects=parse_counts(args.subjects),
        unseen_subjects=parse_counts(args.unseen_subjects), seed=args.seed, temperature=args.temperature,
        batch_size=args.batch_size, progress=not args.quiet, image_size=args.image_size,
    )
    report = evaluate_planner(config)
    print(format_report(report))
    if args.out:
        from .planner_eval import write_report

        print(f"wrote {write_report(report, args.out)}")
    return 0


def _add_train(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("train", help="train the planner on SubjectWorld (ground-truth CoT + layouts)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, history.json, planner/ (or adapter/)")
    p.add_argument("--mode", choices=("full", "lora"), default="full",
                   help="train the whole MLLM (default; for the tiny one) or a LoRA on its attention")
    p.add_argument("--from", dest="start_from", default=None, help="MLLM folder to start from (default: the "
                   "random tiny Qwen2.5-VL)")
    p.add_argument("--budget-minutes", type=float, default=None, help="stop after this much wall time (resumable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--steps", type=int, default=4000, help="total optimiser steps (default 4000)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--decimation", type=float, default=0.5, help="probability a sample is decimated (0: none)")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts of the training scenes")
    p.add_argument("--pool-size", type=int, default=16384, help="training scenes (train identities, seen "
                   "relation combinations)")
    p.add_argument("--eval-samples", type=int, default=32, help="held-out scenes for the evaluation loss")
    p.add_argument("--eval-every", type=int, default=250, help="steps between evaluation lines")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--image-size", type=int, default=64, help="side the references are resized to (default 64, "
                   "the tiny model's; 448 for a real Qwen2.5-VL)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tiny model gains nothing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_eval(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("eval", help="valid-plan rate and cell accuracy on held-out SubjectWorld requests")
    p.add_argument("--planner", default=None, help="planner model folder (default: the music-tiny preset's)")
    p.add_argument("--adapter", default=None, help="a planner LoRA folder for --planner")
    p.add_argument("--samples", type=int, default=64, help="requests per subject count (default 64)")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts of the held-out identity set")
    p.add_argument("--unseen-subjects", default="3,4", help="subject counts of the unseen-combination set")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the planner's)")
    p.add_argument("--batch-size", type=int, default=16, help="requests per generate call")
    p.add_argument("--image-size", type=int, default=64, help="side the references are resized to (default 64: "
                   "what the tiny planner was trained on; 448 for a real Qwen2.5-VL)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write report.json into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``music-planner train`` and ``music-planner eval`` to ``smg``."""
    actions = subparsers.add_parser("music-planner", help="MUSIC planner: train on SubjectWorld, evaluate").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    _add_train(actions)
    _add_eval(actions)


__all__ = ["add_commands", "cmd_eval", "cmd_train", "parse_counts"]
