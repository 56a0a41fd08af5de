"""``smg plan-memory``: a FLUX preset's peak memory per device, on the command line.

Added to ``smg`` through the ``smg_register_commands`` hook by the core's own plugin, since it
reads FLUX configs (:mod:`.memory`). (``smg train subjectworld`` runs registered recipes and
lives in the core: :mod:`smg_sdk.cli_subjectworld`.)
"""

from __future__ import annotations

import argparse


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
    p.add_argument("--lora-rank", type=int, default=16, help="rank of the reference LoRA counted for LoRA presets")
    p.set_defaults(func=cmd_plan_memory)


__all__ = ["add_plan_memory_parser", "cmd_plan_memory"]
