"""The SubjectWorld commands of the CLI: ``smg eval subjectworld``, ``smg subjectworld export``,
``smg train subjectworld``."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from .errors import RequestError, SMGError

QUICK_SAMPLES = 8
"""Samples per subject count with ``--quick``."""


def _counts(text: str) -> tuple[int, ...]:
    """``--subjects``: subject counts in 1..6 separated by commas."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= k <= 6 for k in counts):
        raise RequestError(f"--subjects must be subject counts in 1..6 separated by commas (e.g. 1,2,3,4), "
                           f"got {text!r}.")
    return counts


def _writable(out: str | None, kind: str) -> None:
    """Fail before any work if ``out`` cannot be written (refused by the output rules, or no permission)."""
    if out is None:
        return
    from .atomic import check_output_folder

    path = check_output_folder(out, kind)
    existing = next(p for p in path.parents if p.exists())
    try:  # the one sure test is to write: a probe folder, made and removed here
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as exc:
        raise SMGError(f"--out {out}: cannot write under {existing} ({exc.strerror}); choose another folder.") from None


def cmd_eval_subjectworld(args: argparse.Namespace) -> int:
    """Run a preset (or a baseline) on held-out SubjectWorld requests and print every metric."""
    from .cli import _preset_options, _quiet_loading
    from .eval.world_eval import BASELINES, WorldEvalConfig, evaluate, format_table, write_outputs

    config = WorldEvalConfig(
        args.preset, _counts(args.subjects),
        args.samples if args.samples is not None else QUICK_SAMPLES if args.quick else 32,
        args.seed, args.steps, args.no_references, options=_preset_options(args.option),
    )
    _writable(args.out, "subjectworld-eval")
    if config.preset not in BASELINES:
        from .plugins.manager import get_registry

        get_registry().get("preset", config.preset)  # an unknown name fails here, listing the known ones
        _quiet_loading()
    result = evaluate(config, progress=not args.quiet)
    print(format_table(result.payload))
    if args.out:
        print(f"wrote {write_outputs(result, args.out)}")
    return 0


def cmd_subjectworld_export(args: argparse.Namespace) -> int:
    """Write SubjectWorld requests as DreamBench-style folders plus requests.jsonl."""
    from .data.subjectworld.export import export

    if args.samples < 1:
        raise RequestError(f"--samples must be >= 1, got {args.samples}.")
    _writable(args.dir, "subjectworld-export")
    path = export(args.dir, samples=args.samples, split=args.split, seed=args.seed, subjects=_counts(args.subjects))
    print(f"wrote {args.samples} requests to {path}")
    return 0


def cmd_train_subjectworld(args: argparse.Namespace) -> int:
    """Run one of the tiny preset's training recipes on SubjectWorld (resumable)."""
    import torch

    from .backends.flux.recipes import RecipeOptions, run_recipe
    from .cli import _quiet_loading
    from .training.checkpoint import checkpoints

    out = Path(args.out).expanduser()
    if not args.resume and (out / "checkpoints").is_dir() and checkpoints(out / "checkpoints"):
        raise SMGError(f"--out {args.out} already holds checkpoints of a run; pass --resume to continue it, "
                       "or choose a new folder.")
    for name in ("steps", "batch_size", "threads", "eval_every", "pool_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RequestError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise RequestError(f"--budget-minutes must be > 0, got {args.budget_minutes}.")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        raise RequestError(f"--learning-rate must be in (0, 1), e.g. 5e-4; got {args.learning_rate}.")
    subjects = _counts(args.subjects) if args.subjects is not None else None
    _writable(args.out, "subjectworld-run")
    from .atomic import claim_output_folder

    out = claim_output_folder(out, "subjectworld-run")
    _quiet_loading()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    options = RecipeOptions(str(out), args.start_from, args.vae, args.budget_minutes, args.steps, args.batch_size,
                            args.seed, args.eval_samples, args.eval_every, progress=not args.quiet,
                            pool_size=args.pool_size, subjects=subjects, learning_rate=args.learning_rate,
                            lr_schedule=args.lr_schedule)
    print(f"wrote {run_recipe(args.recipe, options)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``, ``subjectworld`` and ``train`` to the ``smg`` parser."""
    evaluate = sub.add_parser("eval", help="evaluate a preset on a benchmark").add_subparsers(
        dest="benchmark", metavar="BENCHMARK", required=True)
    p = evaluate.add_parser("subjectworld", help="held-out SubjectWorld requests scored by the oracle")
    p.add_argument("--preset", required=True,
                   help="registered preset, or a baseline: ground-truth, copy-paste")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts (default: 1,2,3,4)")
    p.add_argument("--samples", type=int, default=None, help="requests per subject count (default 32; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES} requests per subject count")
    p.add_argument("--no-references", action="store_true", help="drop the references (the text-only row)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a preset option (repeatable)")
    p.add_argument("--out", default=None, help="folder for results.json and contact_sheet.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_subjectworld)

    world = sub.add_parser("subjectworld", help="the SubjectWorld data set").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = world.add_parser("export", help="write requests as DreamBench-style folders")
    p.add_argument("dir", help="output folder (new, or an earlier export)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--split", choices=("heldout", "train"), default="heldout")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts (default: 1,2,3,4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_subjectworld_export)

    train = sub.add_parser("train", help="train on a data set").add_subparsers(
        dest="dataset", metavar="DATASET", required=True)
    p = train.add_parser("subjectworld", help="the tiny preset's recipes: vae, base, reference-lora")
    p.add_argument("--recipe", required=True, choices=("vae", "base", "reference-lora"))
    p.add_argument("--out", required=True, help="run folder: checkpoints, history.json and the result")
    p.add_argument("--from", dest="start_from", default=None,
                   help="FLUX folder to start from (default: the shipped tiny preset)")
    p.add_argument("--vae", default=None, help="trained VAE folder to use instead of the start folder's")
    p.add_argument("--budget-minutes", type=float, default=None, help="stop after this much wall time (resumable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--pool-size", type=int, default=None,
                   help="training samples, each encoded once (default: base 8192 caption scenes, "
                        "reference-lora 4096 reference -> target pairs)")
    p.add_argument("--subjects", default=None,
                   help="subject counts of the training scenes (default: base 1,2,3,4; reference-lora 1,2)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="transformer (base) or LoRA learning rate (default: base 5e-4, reference-lora 1e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                   help="base: constant after warm-up (default), or a cosine to 0 at --steps")
    p.add_argument("--eval-samples", type=int, default=8, help="held-out requests per evaluation (0: none)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluation lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_subjectworld)


__all__ = ["add_parsers", "cmd_eval_subjectworld", "cmd_subjectworld_export", "cmd_train_subjectworld"]
