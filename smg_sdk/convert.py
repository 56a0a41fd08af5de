"""``smg convert-weights DIR``: safetensors copies of a model folder's ``.bin`` (pickle) weights.

The SDK loads safetensors only, never a pickle. Some published models a user needs ship
only ``.bin`` files (the DreamBench protocol's DINO, ``facebook/dino-vits16``, has just
``pytorch_model.bin``). This command, run by the user on a folder they chose to trust, reads
each ``.bin`` with ``torch.load(weights_only=True)`` (tensors and plain containers only, no
code runs) and writes the same tensors beside it under the name transformers/diffusers look
for, so the folder then loads with ``use_safetensors=True``:

=================================================  =============================================
``.bin`` file                                      written beside it
=================================================  =============================================
``pytorch_model.bin``                              ``model.safetensors``
``pytorch_model-00001-of-00002.bin`` (+ index)     ``model-00001-of-00002.safetensors`` (+ index)
``diffusion_pytorch_model.bin``                    ``diffusion_pytorch_model.safetensors``
any other ``NAME.bin``                             ``NAME.safetensors``
=================================================  =============================================

Each file is written to a temporary name and renamed into place, so an interrupted run
leaves no partial file. Existing safetensors files are never overwritten, and the ``.bin``
files are left where they are.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_file
from .errors import ModelLoadError, SMGError

__all__ = ["Conversion", "convert_weights", "require_safetensors", "safetensors_name"]


@dataclass
class Conversion:
    """One file the command handled: ``target`` written from ``source`` (or skipped, with why)."""

    source: Path
    target: Path
    tensors: int = 0
    skipped: str | None = None

    def describe(self) -> str:
        if self.skipped:
            return f"skipped {self.source.name}: {self.skipped}"
        if self.source.name.endswith(".json"):
            return f"wrote {self.target} ({self.tensors} tensors mapped to the .safetensors shard names of {self.source.name})"
        return (f"wrote {self.target} ({self.tensors} tensors, read from {self.source.name} with "
                "torch.load(weights_only=True); the .bin is left in place)")


def safetensors_name(bin_name: str) -> str:
    """The safetensors file name transformers/diffusers expect in place of ``bin_name``."""
    if bin_name.endswith(".bin.index.json"):
        return safetensors_name(bin_name.removesuffix(".index.json")) + ".index.json"
    stem = bin_name.removesuffix(".bin")
    if stem == "pytorch_model" or stem.startswith("pytorch_model-"):
        return "model" + stem.removeprefix("pytorch_model") + ".safetensors"
    return stem + ".safetensors"


def _read_state(path: Path) -> dict:
    """The tensors of a ``.bin`` file, unpickled with ``weights_only=True``."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise ModelLoadError(
            f"Could not read {path} as weights with torch.load(weights_only=True) ({exc}); it holds more than "
            "tensors, or is damaged. Nothing was written for it."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ModelLoadError(f"{path} is not a flat name -> tensor mapping; convert-weights handles model weights only.")
    return state


def _unshared(state: dict) -> dict:
    """Contiguous tensors with no two sharing storage (safetensors refuses shared ones: tied weights)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in state.items():
        tensor = tensor.contiguous()
        key = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if key in seen and tensor.numel() else tensor
        seen.add(key)
    return out


def _convert_file(source: Path) -> Conversion:
    from safetensors.torch import save_file

    target = source.with_name(safetensors_name(source.name))
    if target.exists():
        return Conversion(source, target, skipped=f"{target.name} already exists (left as it is)")
    try:
        state = _unshared(_read_state(source))
    except ModelLoadError as error:  # e.g. training_args.bin or optimizer.bin beside the weights
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()[0]
        return Conversion(source, target, skipped=f"not a weights file, not converted: {first}")
    atomic_file(target, lambda temp: save_file(state, temp, metadata={"format": "pt"}), suffix=".tmp")
    return Conversion(source, target, tensors=len(state))


def _convert_index(source: Path) -> Conversion:
    target = source.with_name(safetensors_name(source.name))
    if target.exists():
        return Conversion(source, target, skipped=f"{target.name} already exists (left as it is)")
    index = json.loads(source.read_text(encoding="utf-8"))
    weight_map = {k: safetensors_name(v) for k, v in index.get("weight_map", {}).items()}
    text = json.dumps({**index, "weight_map": weight_map}, indent=2)
    atomic_file(target, lambda temp: Path(temp).write_text(text, encoding="utf-8"), suffix=".tmp")
    return Conversion(source, target, tensors=len(weight_map))


def convert_weights(folder: str | Path) -> list[Conversion]:
    """Write a safetensors file beside every ``.bin`` weight file directly in ``folder``.

    Returns what was done per file. Raises :class:`SMGError` if ``folder`` is not a folder or
    holds no ``.bin`` file, :class:`ModelLoadError` if a ``.bin`` is not plain tensors.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SMGError(f"convert-weights: {str(folder)!r} is not a folder; pass the model folder holding the .bin files.")
    files = sorted(p for p in root.iterdir() if p.name.endswith(".bin") and p.is_file())
    indexes = sorted(p for p in root.iterdir() if p.name.endswith(".bin.index.json") and p.is_file())
    if not files:
        raise SMGError(f"convert-weights: {root} holds no .bin weight files (it only converts files directly in "
                       "the folder; pass the sub-folder that holds them).")
    done = [_convert_file(p) for p in files]
    if all(c.skipped and c.skipped.startswith("not a weights file") for c in done):
        raise ModelLoadError(f"convert-weights: no .bin file in {root} holds plain tensors: "
                             + "; ".join(f"{c.source.name}: {c.skipped}" for c in done))
    return done + [_convert_index(p) for p in indexes]


def require_safetensors(folder: str | Path, what: str = "model") -> None:
    """Raise :class:`ModelLoadError` naming ``smg convert-weights`` if ``folder``'s weights are ``.bin`` only.

    A folder that does not exist, or holds any safetensors file, passes (the loader reports
    its own errors for those).
    """
    root = Path(folder).expanduser()
    if not root.is_dir() or any(root.glob("*.safetensors")):
        return
    if any(root.glob("*.bin")):
        raise ModelLoadError(
            f"The {what} folder {root} holds .bin (pickle) weights only, and the SDK loads safetensors only. "
            f"Convert them once with `smg convert-weights {root}` (it writes model.safetensors beside the .bin), "
            "then load the folder again."
        )


def cmd_convert_weights(args: argparse.Namespace) -> int:
    for conversion in convert_weights(args.folder):
        print(conversion.describe())
    print("The SDK loads the .safetensors files only; the .bin files are not read again.")
    return 0


def add_convert_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert-weights`` to the ``smg`` parser."""
    p = subparsers.add_parser(
        "convert-weights",
        help="write safetensors beside a model folder's .bin weights (e.g. facebook/dino-vits16)",
        description="Read each .bin file directly in FOLDER with torch.load(weights_only=True) and write its "
                    "tensors beside it as safetensors (pytorch_model.bin -> model.safetensors). Run it only on "
                    "a folder you trust; existing files are never overwritten.",
    )
    p.add_argument("folder", help="the model folder (the one holding config.json and the .bin files)")
    p.set_defaults(func=cmd_convert_weights)
