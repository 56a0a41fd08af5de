"""smg-spotlight: subject-word emphasis and a spotlight attention rule for smg-sdk."""

import argparse

from smg_sdk import hookimpl

__version__ = "0.2.0"


@hookimpl
def smg_register(registry) -> None:
    """Register this plugin's components by name."""
    from .emphasis import WordEmphasis
    from .spotlight import Spotlight

    registry.add_aggregator("word-emphasis", WordEmphasis)
    registry.add_rule("spotlight", Spotlight)


@hookimpl
def smg_register_commands(subparsers) -> None:
    """Add ``smg spotlight``: show which image tokens the rule lets see the references."""
    p = subparsers.add_parser("spotlight", help="print the spotlight box over an image's token grid")
    p.add_argument("--fraction", type=float, default=0.5, help="side of the box, as a fraction (default 0.5)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--size-multiple", type=int, default=16, help="pixels per image token (FLUX: 16)")
    p.set_defaults(func=show_spotlight)


def show_spotlight(args: argparse.Namespace) -> int:
    """Print the token grid, ``#`` where image tokens may attend to the references."""
    from smg_sdk import ConditionError

    from .spotlight import Spotlight, centre_box

    rule = Spotlight(args.fraction)  # checks the fraction
    rows, cols = args.height // args.size_multiple, args.width // args.size_multiple
    if rows < 1 or cols < 1:
        raise ConditionError(
            f"spotlight: --height and --width must be at least --size-multiple ({args.size_multiple}).")
    box = centre_box(rows, cols, rule.fraction).reshape(rows, cols)
    print(f"spotlight {rule.fraction} on {args.width}x{args.height} px = {cols}x{rows} tokens (# sees the references)")
    for row in box.tolist():
        print("".join("#" if seen else "." for seen in row))
    return 0
