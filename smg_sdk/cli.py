"""The ``smg`` command line.

Each subcommand is a ``cmd_<name>(args) -> int`` function wired up in :func:`build_parser`,
so new subcommands are one function plus one ``add_parser`` call. Errors a user can cause
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


def build_parser() -> argparse.ArgumentParser:
    """The ``smg`` parser; each subparser stores its ``cmd_*`` function as ``func``."""
    parser = argparse.ArgumentParser(prog="smg", description="smg-sdk: subject-driven image generation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_plugins)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``smg``; returns the exit code (2 for user errors, like argparse)."""
    parser = build_parser()
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
