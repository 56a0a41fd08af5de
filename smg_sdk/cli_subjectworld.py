"""The SubjectWorld commands of the CLI: ``smg eval subjectworld`` and ``smg subjectworld export``.

``smg train subjectworld`` trains the tiny FLUX, so it lives with the FLUX backend
(:mod:`smg_sdk.backends.flux.cli`) and is added through the command hook.
"""

from __future__ import annotations

import argparse
import tempfile

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
                   help="registered preset, or a baseline: ground-truth, copy-paste")
    p.add_argument("--subjects", default="1,2,3,4", help="subject counts (default: 1,2,3,4)")
    p.add_argument("--samples", type=int, default=None, help="requests per subject count (default 32; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES} requests per subject count")
    p.add_argument("--no-references", action="store_true", help="drop the references (the text-only row)")
    p.add_argument("--describe", action="store_true",
                   help="with --no-references: the prompt names each identity in full (colours, pattern)")
    p.add_argument("--true-cfg", type=float, default=1.0, metavar="S",
                   help="true classifier-free guidance scale against the empty prompt (default 1: none)")
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


__all__ = ["add_parsers", "check_counts", "check_writable", "cmd_eval_subjectworld", "cmd_subjectworld_export"]
