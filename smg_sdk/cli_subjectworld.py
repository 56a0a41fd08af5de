"""The SubjectWorld commands of the CLI: ``smg eval subjectworld``, ``smg subjectworld export`` and
``smg train subjectworld``.

``smg train subjectworld --recipe NAME`` runs a recipe registered by a plugin (registry kind
``recipe``; :mod:`smg_sdk.training.recipes`): the core's FLUX plugin registers ``vae``, ``base``
and ``reference-lora``. Its parser lists the registered recipes, so it is added through the
core plugin's command hook (after the plugins have registered), not with the core's own commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from .errors import RequestError, SMGError

QUICK_SAMPLES = 8
"""Samples per subject count with ``--quick``."""


def check_counts(text: str) -> tuple[int, ...]:
    """``--subjects``: subject counts in 1..6 separated by commas."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= k <= 6 for k in counts):
        raise RequestError(f"--subjects must be subject counts in 1..6 separated by commas (e.g. 1,2,3,4), "
                           f"got {text!r}.")
    return counts


def check_writable(out: str | None, kind: str) -> None:
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
        args.preset, check_counts(args.subjects),
        args.samples if args.samples is not None else QUICK_SAMPLES if args.quick else 32,
        args.seed, args.steps, args.no_references, describe=args.describe, options=_preset_options(args.option),
        true_cfg_scale=args.true_cfg,
        negative_references=None if args.negative_references is None else args.negative_references == "keep",
        aligned=args.aligned,
    )
    check_writable(args.out, "subjectworld-eval")
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
    check_writable(args.dir, "subjectworld-export")
    path = export(args.dir, samples=args.samples, split=args.split, seed=args.seed, subjects=check_counts(args.subjects))
    print(f"wrote {args.samples} requests to {path}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``subjectworld`` to the ``smg`` parser."""
    evaluate = sub.add_parser("eval", help="evaluate a preset on a benchmark").add_subparsers(
        dest="benchmark", metavar="BENCHMARK", required=True)
    p = evaluate.add_parser("subjectworld", help="held-out SubjectWorld requests scored by the oracle")
    p.add_argument("--preset", required=True,
                   help="registered preset, or a baseline: ground-truth, vae-round-trip, copy-paste")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts (default: 1,2,3,4)")
    p.add_argument("--samples", type=int, default=None, help="requests per subject count (default 32; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES} requests per subject count")
    p.add_argument("--no-references", action="store_true", help="drop the references (the text-only row)")
    p.add_argument("--describe", action="store_true",
                   help="with --no-references: the prompt names each identity in full (colours, pattern)")
    p.add_argument("--aligned", action="store_true",
                   help="the aligned set: the same held-out scenes, every subject its class's typical identity "
                        "(text prior and reference agree); default: held-out identities (misaligned)")
    p.add_argument("--true-cfg", type=float, default=None, metavar="S",
                   help="true classifier-free guidance scale against the empty prompt (1: none; default: the preset's)")
    p.add_argument("--negative-references", choices=("keep", "drop"), default=None,
                   help="true CFG's negative branch keeps or drops the references (default: the preset's)")
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


def _check_train_args(args: argparse.Namespace) -> None:
    """One-line :class:`~smg_sdk.errors.RequestError` for a bad number (before any work)."""
    for name in ("steps", "batch_size", "threads", "eval_every", "pool_size", "lora_rank"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RequestError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if args.eval_samples < 0:
        raise RequestError(f"--eval-samples must be >= 0 (0: no evaluation lines), got {args.eval_samples}.")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise RequestError(f"--budget-minutes must be > 0, got {args.budget_minutes}.")
    if args.subject_weight is not None and not 0 <= args.subject_weight <= 100:
        raise RequestError(f"--subject-weight must be in [0, 100], got {args.subject_weight}.")
    if args.describe is not None and not 0 <= args.describe <= 1:
        raise RequestError(f"--describe must be a probability in [0, 1], got {args.describe}.")
    if args.caption_dropout is not None and not 0 <= args.caption_dropout < 1:
        raise RequestError(f"--caption-dropout must be a probability in [0, 1), e.g. 0.1; got {args.caption_dropout}.")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        raise RequestError(f"--learning-rate must be in (0, 1), e.g. 5e-4; got {args.learning_rate}.")


def _holds_run(out: Path) -> bool:
    """Whether ``out`` already holds a run's checkpoints (in ``checkpoints/`` or a folder below it)."""
    from .training.checkpoint import PATTERN

    folder = out / "checkpoints"
    return folder.is_dir() and any(PATTERN.match(p.name) for p in folder.rglob("checkpoint-*"))


def cmd_train_subjectworld(args: argparse.Namespace) -> int:
    """Run a registered SubjectWorld recipe (resumable from ``--out``)."""
    import torch

    from .atomic import OUTPUT_MARKER, claim_output_folder
    from .cli import _preset_options, _quiet_loading
    from .training.recipes import RecipeOptions, recipe_factory, run_recipe

    recipe_options = _preset_options(args.option)
    recipe_factory(args.recipe, recipe_options)  # an unknown recipe or option fails here, before any work
    out = Path(args.out).expanduser()
    if not args.resume and _holds_run(out):
        raise SMGError(f"--out {args.out} already holds checkpoints of a run; pass --resume to continue it, "
                       "or choose a new folder.")
    _check_train_args(args)
    subjects = check_counts(args.subjects) if args.subjects is not None else None
    check_writable(args.out, "subjectworld-run")
    created = not out.exists()
    out = claim_output_folder(out, "subjectworld-run")
    _quiet_loading()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    options = RecipeOptions(str(out), args.start_from, args.vae, args.budget_minutes, args.steps, args.batch_size,
                            args.seed, args.eval_samples, args.eval_every, progress=not args.quiet,
                            pool_size=args.pool_size, subjects=subjects, learning_rate=args.learning_rate,
                            lr_schedule=args.lr_schedule, subject_weight=args.subject_weight,
                            describe=args.describe, caption_dropout=args.caption_dropout, lora_rank=args.lora_rank,
                            position=args.position)
    try:
        wrote = run_recipe(args.recipe, options, **recipe_options)
    except SMGError:
        if created and [p.name for p in out.iterdir()] == [OUTPUT_MARKER]:  # refused before it wrote anything
            shutil.rmtree(out)
        raise
    print(f"wrote {wrote}")
    return 0


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """The hyper-parameters of ``train subjectworld`` (each recipe says which it uses)."""
    p.add_argument("--steps", type=int, default=None, help="total steps (default: vae 4400, base 3000, "
                   "reference-lora 1500, squeeze 1000 over its two stages)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: vae 16, base 32, reference-lora 8, squeeze 4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--pool-size", type=int, default=None,
                   help="training samples (default: base 8192 caption scenes, each encoded once; reference-lora "
                        "4096 reference -> target pairs, each encoded once; squeeze 4096 pairs)")
    p.add_argument("--subjects", default=None,
                   help="subject counts of the training scenes (default: base 1,2,3,4; reference-lora, squeeze 1,2)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="transformer (base), LoRA (reference-lora) or stage-1 (squeeze) learning rate "
                        "(default: base 5e-4, reference-lora 1e-3, squeeze 1e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                   help="base: constant after warm-up (default), or a cosine to 0 at --steps")
    p.add_argument("--subject-weight", type=float, default=None,
                   help="base, reference-lora, squeeze: extra loss weight on the subjects' tokens (the loss weighs "
                        "them 1 + W; default 0, a plain mean)")
    p.add_argument("--describe", type=float, default=None,
                   help="base: probability that a caption names a subject's whole identity (colours, pattern) "
                        "instead of its class word only (default 0)")
    p.add_argument("--caption-dropout", type=float, default=None,
                   help="base, reference-lora: probability that a training caption is replaced by the empty prompt, "
                        "so the model can be sampled with true classifier-free guidance (--true-cfg in smg eval; "
                        "default 0)")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="reference-lora, squeeze: the LoRA's rank (default: reference-lora 16, squeeze 4)")
    p.add_argument("--position", choices=("omini", "kontext", "uno"), default=None,
                   help="reference-lora, squeeze: the reference tokens' position ids (default: the preset's)")


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train subjectworld`` to the ``smg`` parser; its help lists the registered recipes."""
    from .training.recipes import describe_recipes

    listing = describe_recipes()
    names = ", ".join(line.split(" ", 1)[0] for line in listing)
    train = subparsers.add_parser("train", help="train on a data set").add_subparsers(
        dest="dataset", metavar="DATASET", required=True)
    p = train.add_parser("subjectworld", help=f"SubjectWorld recipes: {names}",
                         epilog="recipes:\n" + "\n".join(f"  {line}" for line in listing),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", required=True, metavar="NAME", help=f"a registered recipe: {names}")
    p.add_argument("--out", required=True, help="run folder: checkpoints, history.json and the result")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the recipe (repeatable; see the list below), e.g. aggregator=dla")
    p.add_argument("--from", dest="start_from", default=None,
                   help="FLUX folder to start from (default: the shipped tiny preset)")
    p.add_argument("--vae", default=None, help="base: trained VAE folder to use instead of the start folder's")
    p.add_argument("--budget-minutes", type=float, default=None, help="stop after this much wall time (resumable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_train_options(p)
    p.add_argument("--eval-samples", type=int, default=8, help="held-out requests per subject count in each "
                   "evaluation line (0: none)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluation lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_subjectworld)


__all__ = ["add_parsers", "add_train_parser", "check_counts", "check_writable", "cmd_eval_subjectworld",
           "cmd_subjectworld_export", "cmd_train_subjectworld"]
