"""``smg train subjectworld``: the tiny FLUX's training recipes on the command line.

Added to ``smg`` through the ``smg_register_commands`` hook by the core's own plugin, since the
recipes (:mod:`.recipes`) train FLUX.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ...cli_subjectworld import check_counts, check_writable
from ...errors import RequestError, SMGError


def cmd_train_subjectworld(args: argparse.Namespace) -> int:
    """Run one of the tiny preset's training recipes on SubjectWorld (resumable)."""
    import torch

    from .recipes import RecipeOptions, run_recipe
    from ...cli import _quiet_loading
    from ...training.checkpoint import checkpoints

    out = Path(args.out).expanduser()
    if not args.resume and (out / "checkpoints").is_dir() and checkpoints(out / "checkpoints"):
        raise SMGError(f"--out {args.out} already holds checkpoints of a run; pass --resume to continue it, "
                       "or choose a new folder.")
    for name in ("steps", "batch_size", "threads", "eval_every", "pool_size", "lora_rank"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RequestError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
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
    subjects = check_counts(args.subjects) if args.subjects is not None else None
    check_writable(args.out, "subjectworld-run")
    from ...atomic import claim_output_folder

    out = claim_output_folder(out, "subjectworld-run")
    _quiet_loading()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    options = RecipeOptions(str(out), args.start_from, args.vae, args.budget_minutes, args.steps, args.batch_size,
                            args.seed, args.eval_samples, args.eval_every, progress=not args.quiet,
                            pool_size=args.pool_size, subjects=subjects, learning_rate=args.learning_rate,
                            lr_schedule=args.lr_schedule, subject_weight=args.subject_weight,
                            describe=args.describe, caption_dropout=args.caption_dropout, lora_rank=args.lora_rank, position=args.position)
    print(f"wrote {run_recipe(args.recipe, options)}")
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train subjectworld`` to the ``smg`` parser."""
    train = subparsers.add_parser("train", help="train on a data set").add_subparsers(
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
    p.add_argument("--subject-weight", type=float, default=None,
                   help="base, reference-lora: extra loss weight on the subjects' tokens (the loss weighs them 1 + W; "
                        "default 0, a plain mean)")
    p.add_argument("--describe", type=float, default=None,
                   help="base: probability that a caption names a subject's whole identity (colours, pattern) "
                        "instead of its class word only (default 0)")
    p.add_argument("--caption-dropout", type=float, default=None,
                   help="base, reference-lora: probability that a training caption is replaced by the empty prompt, "
                        "so the model can be sampled with true classifier-free guidance (--true-cfg in smg eval; "
                        "default 0)")
    p.add_argument("--lora-rank", type=int, default=None, help="reference-lora: the LoRA's rank (default 16)")
    p.add_argument("--position", choices=("omini", "kontext", "uno"), default=None,
                   help="reference-lora: the reference tokens' position ids (default: the tiny preset's)")
    p.add_argument("--eval-samples", type=int, default=8, help="held-out requests per evaluation (0: none)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluation lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_subjectworld)


def cmd_plan_memory(args: argparse.Namespace) -> int:
    """Print the estimated peak memory per device of a preset (see :mod:`.memory`)."""
    from .memory import Request, format_plan, plan_memory

    tiny = args.preset == "tiny" or args.preset.endswith("-tiny")
    side = 128 if tiny else 1024
    request = Request(height=side if args.height is None else args.height, width=side if args.width is None else args.width, references=args.references,
                      batch=args.batch, reference_mode=args.reference_mode)
    plan = plan_memory(args.preset, dtype=args.dtype, offload=args.offload or "none", quant=args.quant or "none",
                       models=args.models, request=request, lora_rank=args.lora_rank)
    print(format_plan(plan))
    return 0


def add_plan_memory_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plan-memory`` to the ``smg`` parser."""
    from .memory import DTYPE_BYTES, PRESET_MODELS

    p = subparsers.add_parser("plan-memory", help="estimate a preset's peak memory per device from its configs")
    p.add_argument("--preset", required=True,
                   help=f"one of {', '.join(sorted(PRESET_MODELS))}; NAME-tiny reads the tiny folders")
    p.add_argument("--dtype", default="bf16", choices=tuple(DTYPE_BYTES))
    p.add_argument("--offload", default=None, choices=("model", "group"),
                   help="model: one model at a time on the device; group: one transformer block at a time")
    p.add_argument("--quant", default=None, choices=("nf4", "int8"),
                   help="bitsandbytes weights of the transformer, T5 and the MLLM")
    p.add_argument("--models", default=None,
                   help="a root of config.json folders (flux/transformer, flux/vae, flux/text_encoder, "
                        "flux/text_encoder_2, qwen2_5_vl, siglip, redux, clip); default: the published configs "
                        "shipped with smg-sdk, or the tiny folders for NAME-tiny")
    p.add_argument("--height", type=int, default=None, help="image height in px (default 1024; tiny 128)")
    p.add_argument("--width", type=int, default=None, help="image width in px (default 1024; tiny 128)")
    p.add_argument("--references", type=int, default=1, help="reference images per request")
    p.add_argument("--batch", type=int, default=1, help="images per sampler call (candidates x images)")
    p.add_argument("--reference-mode", default="concat", choices=("concat", "cached"))
    p.add_argument("--caption-dropout", type=float, default=None,
                   help="base, reference-lora: probability that a training caption is replaced by the empty prompt, "
                        "so the model can be sampled with true classifier-free guidance (--true-cfg in smg eval; "
                        "default 0)")
    p.add_argument("--lora-rank", type=int, default=16, help="rank of the reference LoRA counted for LoRA presets")
    p.set_defaults(func=cmd_plan_memory)


__all__ = ["add_plan_memory_parser", "add_train_parser", "cmd_plan_memory", "cmd_train_subjectworld"]
