"""The ``smg`` command line.

Each subcommand is a ``cmd_<name>(args) -> int`` function wired up in :func:`build_parser`,
so new subcommands are one function plus one ``add_parser`` call. Plugins add theirs through
the ``smg_register_commands`` hook (:func:`~smg_sdk.plugins.add_plugin_commands`); those are
looked up only when the command is not one of the core's, so ``smg generate`` and friends
never wait for another plugin's command hook. Errors a user can cause
(:class:`~smg_sdk.errors.SMGError`) are shown as one ``smg: error: ...`` line, not a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict
from typing import Callable, Sequence

from .errors import SMGError


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def cmd_plugins(args: argparse.Namespace) -> int:
    """List plugins, their versions, where they came from and what each registers."""
    from .plugins import KINDS, PluginLoadWarning, list_plugins

    with warnings.catch_warnings():
        # Load failures are shown in the listing itself; a warning on top would repeat them.
        warnings.simplefilter("ignore", PluginLoadWarning)
        infos = list_plugins()

    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return 0

    header = ("NAME", "VERSION", "SOURCE")
    rows = [(i.name, i.version or "-", i.source) for i in infos]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]
    kind_width = max(len(k) for k in (*KINDS, "error")) + 1

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    out = [line(header)]
    for info, row in zip(infos, rows):
        out.append(line(row))
        if info.error is not None:
            out.append(f"    {'error:'.ljust(kind_width)} {_one_line(info.error)}")
        for kind in KINDS:
            names = info.components.get(kind)
            if names:
                out.append(f"    {(kind + ':').ljust(kind_width)} {', '.join(names)}")
        if info.error is None and not info.components:
            out.append("    (registers nothing)")
    if not infos:
        out.append("(no plugins)")
    print("\n".join(out))
    return 0


def _quiet_loading() -> None:
    """Model-loading progress bars would drown the command's own output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def _parse_subject(spec: str):
    """``path.png`` or ``path.png:class word`` -> Subject (the last ':' splits, so paths may hold ':').

    The image is read by :func:`smg_sdk.images.load_image` (EXIF orientation, bit depth, transparency).
    """
    from .errors import RequestError
    from .types import Subject

    path, word = split_subject_spec(spec)
    try:
        return Subject(path, word.strip() or None)
    except RequestError as exc:
        raise RequestError(f"--subject {spec!r}: {str(exc).replace('Subject.image ', '', 1)} "
                           "Pass --subject path/to/image.png[:class word].") from exc


def split_subject_spec(spec: str, base=None) -> tuple[str, str]:
    """``"PATH[:CLASS WORD]"`` -> ``(path, word)``; a PATH (relative to ``base``) that exists is never split."""
    from pathlib import Path

    exists = (Path(base) / spec if base is not None else Path(spec)).exists()
    path, _, word = spec.rpartition(":") if ":" in spec and not exists else (spec, "", "")
    return path, word


def check_output_path(out) -> None:
    """Refuse an ``--out`` that cannot be written, before any model loads.

    ``out`` must end in .png/.jpg/.jpeg/.webp, must not be a folder, no existing part of its
    parent path may be a file, and the nearest existing parent folder must be writable.
    """
    import os
    from pathlib import Path

    from .errors import RequestError

    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise RequestError(f"--out {str(out)!r} must end in .png, .jpg or .webp.")
    if out.is_dir():
        raise RequestError(f"--out {str(out)!r} is a folder; name an image file inside it, e.g. {str(out / 'out.png')!r}.")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RequestError(f"--out {str(out)!r} cannot be created: {str(parent)!r} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RequestError(f"--out {str(out)!r} cannot be written: folder {str(parent)!r} is not writable.")
    if out.exists() and not os.access(out, os.W_OK) and not os.access(out.parent, os.W_OK):
        raise RequestError(f"--out {str(out)!r} exists and cannot be replaced.")


def _preset_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; values are read as JSON when they parse (numbers, true, null...), else text."""
    from .errors import RequestError

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RequestError(f"--option {pair!r} is not KEY=VALUE (e.g. --option reference_mode=cached).")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _load_pipeline(args: argparse.Namespace):
    """The pipeline to run, with the components named on the command line.

    A planner may name the attention rules that make its plans take effect
    (``planner.suggested_rules``) and a verifier to rank its candidates
    (``planner.suggested_verifier``); the command adds those the pipeline lacks, and says so.
    """
    from .errors import RequestError
    from .interfaces import component_name
    from .pipeline import SubjectPipeline, build_component

    options = _preset_options(getattr(args, "option", None) or [])
    if args.pipeline and options:
        raise RequestError("--option sets preset options; a saved --pipeline has its options already.")
    allow_external = getattr(args, "allow_external", None) or []
    if allow_external and not args.pipeline:
        raise RequestError("--allow-external applies to a saved --pipeline folder.")
    pipe = (SubjectPipeline.from_pretrained(args.pipeline, allow_external=allow_external) if args.pipeline
            else SubjectPipeline.from_preset(args.preset, **options))
    if getattr(args, "planner", None):
        pipe.planner = build_component("planner", args.planner)
    if getattr(args, "verifier", None):
        pipe.verifier = build_component("verifier", args.verifier)
    for name in getattr(args, "aggregator", None) or []:
        pipe.aggregators.append(build_component("aggregator", name))
    present = {component_name(r) for r in pipe.rules}
    wanted = list(getattr(args, "rule", None) or [])
    suggested = list(getattr(pipe.planner, "suggested_rules", ()) or ()) if pipe.planner is not None else []
    for name in wanted + suggested:
        if name not in present:
            pipe.rules.append(build_component("rule", name))
            present.add(name)
            if name not in wanted:
                print(f"added rule {name} (planner {component_name(pipe.planner)} needs it for its plans to act)")
    verifier = getattr(pipe.planner, "suggested_verifier", None) if pipe.planner is not None else None
    if pipe.verifier is None and getattr(args, "candidates", 1) > 1 and verifier:
        pipe.verifier = build_component("verifier", verifier)
        print(f"ranking candidates with verifier {verifier} (suggested by planner {component_name(pipe.planner)})")
    return pipe


def _atomic(path, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` beside ``path``, then rename into place: no half-written files."""
    from .atomic import atomic_file

    atomic_file(path, write)


def _candidate_rows(result) -> list[tuple[int, object, float | None, object]]:
    """(candidate index, image, score, plan) for every image, best first when scored."""
    plans = result.plans or [None] * len(result.images)
    if result.ranking:
        return list(zip(result.ranking, result.images, result.scores, plans))
    return [(k, image, None, plan) for k, (image, plan) in enumerate(zip(result.images, plans))]


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate one image (or several candidates) from a prompt and subject images.

    Writes the chosen image to ``--out``; with several candidates also ``<stem>_candidates.png``
    (every candidate, best first, with its score); with a planner, each plan's grid as
    ``<stem>_plan<k>.png`` and ``<stem>_plans.json`` (text, layout, notes and score per candidate).
    """
    from pathlib import Path

    from PIL import Image

    if args.batch is not None:
        from .batch import cmd_generate_batch

        return cmd_generate_batch(args)
    out = Path(args.out)
    check_output_path(out)
    subjects = [_parse_subject(s) for s in args.subject]
    _quiet_loading()
    pipe = _load_pipeline(args)
    pipe.set_progress_bar_config(disable=args.quiet)
    result = pipe(
        args.prompt,
        subjects,
        height=args.height,
        width=args.width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        num_candidates=args.candidates,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions()[out.suffix.lower()]
    _atomic(out, lambda tmp: result.images[0].save(tmp, format=image_format))
    print(f"wrote {out}")
    rows = _candidate_rows(result)
    if len(rows) > 1:
        _write_candidates(out, rows)
    _write_plans(out, rows, [s.class_word for s in subjects])
    return 0


def _write_candidates(out, rows: list) -> None:
    """``<stem>_candidates.png``: every candidate, best first, captioned with its score."""
    from .gallery import contact_sheet

    captions = [f"#{k} score {s:.3f}" if s is not None else f"#{k}" for k, _, s, _ in rows]
    if rows[0][2] is not None:
        captions[0] += " best"
    sheet_path = out.with_name(out.stem + "_candidates.png")
    sheet = contact_sheet([image for _, image, _, _ in rows], captions)
    _atomic(sheet_path, lambda tmp: sheet.save(tmp, format="PNG"))
    print(f"wrote {sheet_path}")


def _write_plans(out, rows: list, names: list) -> None:
    """Each plan's grid as ``<stem>_plan<k>.png`` and ``<stem>_plans.json`` (nothing without plans)."""
    from pathlib import Path

    records = []
    for rank, (k, _, score, plan) in enumerate(rows):
        if plan is None:
            continue
        record = {"candidate": k, "rank": rank, "score": score, "prompt": plan.prompt, "cot": plan.cot,
                  "layout": None if plan.layout is None else plan.layout.tolist(), "notes": plan.notes}
        if plan.layout is not None:
            grid_path = out.with_name(f"{out.stem}_plan{k}.png")
            title = f"plan #{k}" + (f" score {score:.3f}" if score is not None else "")
            grid = plan.grid_image(names=names, title=title)
            _atomic(grid_path, lambda tmp: grid.save(tmp, format="PNG"))
            record["grid"] = grid_path.name
            print(f"wrote {grid_path}")
        records.append(record)
    if records:
        plans_path = out.with_name(out.stem + "_plans.json")
        text = json.dumps(records, indent=2, default=str)
        _atomic(plans_path, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {plans_path}")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded tiny preset: a small gallery of generations."""
    import torch

    from .demo import run_demo

    _quiet_loading()
    torch.set_num_threads(1)  # the tiny preset runs fastest on one thread (two oversubscribe a busy machine)
    path = run_demo(args.out, steps=args.steps, seed=args.seed, progress=not args.quiet)
    print(f"demo gallery written to {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The web app (Gradio, the ``app`` extra) on ``--preset``, at ``http://HOST:PORT``; see docs/app.md."""
    from .app import serve

    if not 0 < args.port < 65536:
        raise SMGError(f"--port must be 1..65535, got {args.port}.")
    serve(args.preset, args.port, args.host)
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``smg ...: error: ...`` line (exit 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The ``smg`` parser; each subparser stores its ``cmd_*`` function (or a plugin's handler) as ``func``.

    ``plugin_commands=False`` leaves out the sub-commands plugins add (and does not load plugins).
    """
    parser, sub = _core_parser()
    if plugin_commands:
        from .plugins import add_plugin_commands

        add_plugin_commands(sub)
    return parser


def _core_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The parser with the core's sub-commands only, and its sub-parsers object."""
    parser = OneLineParser(prog="smg", description="smg-sdk: subject-driven image generation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("generate", help="generate an image from a prompt and subject images")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", default="tiny", help="registered preset to run (default: tiny)")
    source.add_argument("--pipeline", help="folder written by SubjectPipeline.save_pretrained")
    p.add_argument("--allow-external", action="append", default=[], metavar="PATH",
                   help="a location outside the --pipeline folder it may load from, e.g. its base model (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a preset option, e.g. reference_mode=cached (repeatable)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="instruction; <1>, <2>... name the subjects in order")
    what.add_argument("--batch", metavar="REQUESTS.jsonl",
                      help="generate every request of a JSON Lines file into the --out folder (resumable; "
                           "splits over `accelerate launch` processes; see smg_sdk/batch.py)")
    p.add_argument("--subject", action="append", default=[], metavar="IMAGE[:CLASS]",
                   help="a subject image, optionally with its class word (repeatable)")
    p.add_argument("--out", default="out.png", help="output image path (default: out.png); with --batch, a folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None, help="FLUX guidance scale")
    p.add_argument("--candidates", type=int, default=1, help="generate N candidates and keep the best")
    p.add_argument("--planner", default=None, help="registered planner name (e.g. music)")
    p.add_argument("--verifier", default=None,
                   help="registered verifier name (with --candidates > 1 the planner's suggestion is the default)")
    p.add_argument("--aggregator", action="append", default=[], metavar="NAME",
                   help="add a registered aggregator, with its default config (repeatable)")
    p.add_argument("--rule", action="append", default=[], metavar="NAME",
                   help="add a registered attention rule (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="write a small gallery of generations with the tiny preset")
    p.add_argument("--out", default="smg-demo", help="output folder (default: ./smg-demo)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="the web app: references, instruction, candidates, plans (pip install 'smg-sdk[app]')")
    p.add_argument("--preset", default="tiny", help="registered preset selected on load (default: tiny)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.set_defaults(func=cmd_serve)

    from .cli_subjectworld import add_parsers

    add_parsers(sub)
    return parser, sub


def _is_core_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` starts with one of the core's sub-commands (so no plugin command is needed)."""
    _, sub = _core_parser()
    return bool(argv) and argv[0] in sub.choices


def main(argv: list[str] | None = None) -> int:
    """Run ``smg``; returns the exit code (2 for user errors, like argparse)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(plugin_commands=not _is_core_command(argv))
    args = parser.parse_args(argv)  # exits 2 with a usage line on bad arguments
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except SMGError as exc:
        print(f"smg: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
