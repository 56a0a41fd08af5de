"""Training checkpoints: trainable tensors and optimizer state as safetensors, the rest JSON; atomic.

A checkpoint is a folder ``checkpoint-<step>/`` written beside its final name and swapped
into place, so a run killed mid-save leaves the previous checkpoint intact::

    trainable.safetensors    the trained tensors by name
    optimizer.safetensors    every tensor of the optimizer state
    state.json               step, run config, the optimizer state's structure, sha256 of both files

Nothing is unpickled: a checkpoint from anywhere loads as data only. A damaged checkpoint is a
:class:`~smg_sdk.errors.ModelLoadError` naming the file, and :func:`resume_checkpoint` falls
back to the newest complete one with a :class:`CheckpointWarning`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from ..atomic import atomic_folder
from ..errors import ConfigError, ModelLoadError, SMGError
from ..manifest import sha256_file

PATTERN = re.compile(r"checkpoint-(\d+)$")
TENSOR_FILES = ("trainable.safetensors", "optimizer.safetensors")
STATE_FILE = "state.json"


class CheckpointWarning(UserWarning):
    """A damaged or incomplete checkpoint was skipped; training resumed from an earlier one."""


def _is_checkpoint(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def save_checkpoint(root: Path, step: int, tensors: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                    meta: dict[str, Any]) -> Path:
    """Write ``checkpoint-<step>`` under ``root`` atomically; returns its path."""
    from safetensors.torch import save_file

    final = Path(root) / f"checkpoint-{step}"
    with atomic_folder(final, kind="checkpoint", recognise=_is_checkpoint) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / TENSOR_FILES[0]))
        optimizer_tensors: dict[str, torch.Tensor] = {}
        structure = _encode(optimizer_state, optimizer_tensors)
        save_file(optimizer_tensors, str(staging / TENSOR_FILES[1]))
        files = {name: sha256_file(staging / name) for name in TENSOR_FILES}
        state = {"step": step, **meta, "optimizer": structure, "files": files}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True, allow_nan=False))
    return final


def checkpoints(root: Path) -> list[Path]:
    """``checkpoint-<step>`` folders under ``root``, newest (highest step) first."""
    if not Path(root).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if p.is_dir() and (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(root: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder under ``root`` (complete or not), or None."""
    found = checkpoints(root)
    return found[0] if found else None


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """``(trainable tensors, optimizer state, state)``; a damaged or incomplete folder is a ModelLoadError."""
    folder = Path(folder)
    hint = "the checkpoint is damaged or incomplete; delete it to resume from an earlier one"
    for name in (*TENSOR_FILES, STATE_FILE):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder / name} is missing: {hint}.")
    state = _read_state(folder / STATE_FILE, hint)
    match = PATTERN.match(folder.name)
    if match is not None and int(match.group(1)) != state["step"]:
        raise ModelLoadError(f"{folder / STATE_FILE} says step {state['step']} in folder {folder.name}: {hint}.")
    for name in TENSOR_FILES:
        if sha256_file(folder / name) != state["files"].get(name):
            raise ModelLoadError(f"{folder / name} does not match its sha256 in {STATE_FILE}: {hint}.")
    tensors = _load_tensors(folder / TENSOR_FILES[0], hint)
    optimizer_tensors = _load_tensors(folder / TENSOR_FILES[1], hint)
    try:
        optimizer_state = _decode(state.pop("optimizer"), optimizer_tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / STATE_FILE}: the optimizer state is malformed ({exc}): {hint}.") from exc
    return tensors, optimizer_state, state


def _read_state(file: Path, hint: str) -> dict[str, Any]:
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{file} is not valid JSON ({str(exc)[:200]}): {hint}.") from None
    ok = (isinstance(state, dict) and isinstance(state.get("step"), int) and not isinstance(state["step"], bool)
          and state["step"] >= 0 and isinstance(state.get("files"), dict) and "optimizer" in state)
    if not ok:
        raise ModelLoadError(f"{file} lacks a valid step, files or optimizer entry: {hint}.")
    return state


def _load_tensors(file: Path, hint: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{file} is not a readable safetensors file ({exc}): {hint}.") from exc


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for ``value`` with every tensor moved into ``tensors`` (tuples and non-str keys kept)."""
    if torch.is_tensor(value):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().contiguous().cpu()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SMGError(f"The optimizer state holds a {type(value).__name__}, which a checkpoint cannot store.")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`_encode`; raises KeyError/TypeError/ValueError on malformed input."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"unexpected {type(value).__name__}")
    (tag, inner), = value.items()
    if tag == "__tensor__":
        return tensors[inner]
    if tag == "__tuple__":
        return tuple(_decode(v, tensors) for v in inner)
    if tag == "__float__":
        return float(inner)
    if tag == "__dict__":
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in inner}
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(key: Any) -> Any:
    hash(key)  # a list or dict as a key is malformed input: TypeError
    return key


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: Iterable[str]) -> list[str]:
    """``"key: checkpoint X, now Y"`` for every setting that differs (JSON-normalised), ``ignore`` skipped."""
    def normal(config: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(config, default=str))

    saved, current, skip = normal(saved), normal(current), set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [f"{k}: checkpoint {saved.get(k, '(unset)')!r}, now {current.get(k, '(unset)')!r}"
            for k in keys if saved.get(k) != current.get(k)]


UNRECORDED_BEFORE = ("data",)
"""Run settings added after checkpoints existed (the trainer's ``data``): a checkpoint written
without one resumes with a :class:`CheckpointWarning`, since it cannot say what it was."""


def _unrecorded(folder: Path, state: dict[str, Any], config: dict[str, Any]) -> list[str]:
    missing = [k for k in UNRECORDED_BEFORE if k in config and k not in state.get("config", {})]
    if missing:
        warnings.warn(f"{folder.name} was written before runs recorded {', '.join(missing)}, so it cannot be checked "
                      f"against this run's ({', '.join(f'{k}={config[k]!r}' for k in missing)}); resuming it as the "
                      "same run.", CheckpointWarning, stacklevel=3)
    return missing


def resume_checkpoint(
    root: Path, config: dict[str, Any], ignore: Iterable[str] = ()
) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any], dict[str, Any]] | None:
    """The newest complete checkpoint under ``root`` whose run config matches ``config``, loaded.

    Damaged or incomplete checkpoints are skipped with a :class:`CheckpointWarning`. A complete
    checkpoint written with a different config is refused (:class:`~smg_sdk.errors.ConfigError`
    listing the differences): resuming it would not continue the same run. None when ``root``
    has no checkpoint; a ModelLoadError when it has some but none is complete.
    """
    found = checkpoints(root)
    problems = []
    for folder in found:
        try:
            tensors, optimizer_state, state = load_checkpoint(folder)
        except ModelLoadError as exc:
            problems.append(str(exc))
            warnings.warn(f"Skipping {folder.name}: {exc}", CheckpointWarning, stacklevel=2)
            continue
        differences = config_differences(state.get("config", {}), config, [*ignore, *_unrecorded(folder, state, config)])
        if differences:
            raise ConfigError(
                f"{folder} was written by a run with other settings, so resuming it would not continue that run: "
                + "; ".join(differences) + ". Use the same settings, or another output_dir to start afresh."
            )
        return folder, tensors, optimizer_state, state
    if found:
        raise ModelLoadError(f"No complete checkpoint in {root}: " + " ".join(problems))
    return None
