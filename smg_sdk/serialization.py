"""Saving and loading composed pipelines: a JSON manifest plus safetensors files.

Layout of a saved folder::

    smg_pipeline.json          components by registered name + config, tensor shapes
    backend/                   the backend's own files (base model and LoRA adapters)
    components/<kind>_<i>.safetensors   state dicts of components that are nn.Modules

The folder is written beside its destination and renamed into place, so an interrupted save
never leaves a half-written pipeline. Loading checks every tensor against the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_folder
from .errors import ModelLoadError, SMGError, WeightsMismatchError
from .interfaces import component_config, component_name
from .plugins.manager import get_registry

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import SubjectPipeline

MANIFEST = "smg_pipeline.json"
FORMAT_VERSION = 1
LIST_KINDS = {"encoders": "encoder", "aggregators": "aggregator", "rules": "rule"}
SINGLE_KINDS = {"schedule": "schedule", "planner": "planner", "verifier": "verifier"}


def _describe(component: Any, kind: str, slot: str, folder: Path) -> dict[str, Any]:
    name = component_name(component)
    if name is None:
        raise SMGError(
            f"The {kind} {type(component).__name__} in {slot} was built by hand, so it cannot be saved by name; "
            "register its factory in a plugin (registry.add_" + kind + ") and compose the pipeline by name."
        )
    config = component_config(component)
    try:
        json.dumps(config)
    except TypeError as exc:
        raise SMGError(f"The config of {kind} {name!r} is not JSON-serialisable ({exc}); use plain values.") from exc
    entry: dict[str, Any] = {"name": name, "config": config}
    if isinstance(component, torch.nn.Module):
        state = {k: v.detach().contiguous().cpu() for k, v in component.state_dict().items()}
        if state:
            file = f"components/{slot}.safetensors"
            (folder / "components").mkdir(exist_ok=True)
            save_file(state, str(folder / file))
            entry["weights"] = file
            entry["tensors"] = {k: [list(v.shape), str(v.dtype)] for k, v in state.items()}
    return entry


def save_pipeline(pipe: "SubjectPipeline", folder: Path) -> Path:
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise SMGError(f"{folder} exists and is not a saved pipeline; choose an empty or new folder.")
    with atomic_folder(folder) as staging:
        manifest: dict[str, Any] = {"format": FORMAT_VERSION, "defaults": pipe.defaults}
        manifest["backend"] = pipe.backend.save_pretrained(staging / "backend")
        manifest["backend_tensors"] = _tensor_index(staging / "backend")
        for attr, kind in LIST_KINDS.items():
            manifest[attr] = [
                _describe(c, kind, f"{attr}_{i}", staging) for i, c in enumerate(getattr(pipe, attr))
            ]
        for attr, kind in SINGLE_KINDS.items():
            component = getattr(pipe, attr)
            manifest[attr] = None if component is None else _describe(component, kind, attr, staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return folder


def _tensor_index(root: Path) -> dict[str, dict[str, list]]:
    """Shape and dtype of every tensor in every safetensors file below ``root`` (headers only)."""
    from safetensors import safe_open

    index: dict[str, dict[str, list]] = {}
    for file in sorted(root.rglob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            index[str(file.relative_to(root))] = {
                k: [list(f.get_slice(k).get_shape()), _dtype_name(f.get_slice(k).get_dtype())] for k in f.keys()
            }
    return index


def _dtype_name(safetensors_dtype: str) -> str:
    names = {"F32": "torch.float32", "F16": "torch.float16", "BF16": "torch.bfloat16", "F64": "torch.float64",
             "I64": "torch.int64", "I32": "torch.int32", "BOOL": "torch.bool", "U8": "torch.uint8"}
    return names.get(safetensors_dtype, safetensors_dtype)


def _check_backend_files(root: Path, expected: dict[str, dict[str, list]]) -> None:
    for rel in expected:
        if not (root / rel).is_file():
            raise ModelLoadError(f"Backend weights file {root / rel} named in the manifest is missing.")
    actual = _tensor_index(root)
    for rel, tensors in expected.items():
        _check_shapes(actual[rel], tensors, str(root / rel))


def _check_shapes(actual: dict[str, list], expected: dict[str, list], where: str) -> None:
    for key, (shape, dtype) in expected.items():
        if key not in actual:
            raise WeightsMismatchError(f"{where}: tensor {key!r} listed in the manifest is missing from the file.")
        if list(actual[key][0]) != list(shape) or actual[key][1] != dtype:
            raise WeightsMismatchError(
                f"{where}: tensor {key!r} is {tuple(actual[key][0])} {actual[key][1]} but the manifest says "
                f"{tuple(shape)} {dtype}; the folder was modified or mixed with another save."
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise WeightsMismatchError(f"{where}: tensor {extra[0]!r} is in the file but not in the manifest.")


def _check_tensors(state: dict[str, torch.Tensor], expected: dict[str, list], where: str) -> None:
    actual = {k: [list(v.shape), str(v.dtype)] for k, v in state.items()}
    _check_shapes(actual, expected, where)


def _rebuild(entry: dict[str, Any] | None, kind: str, folder: Path) -> Any:
    if entry is None:
        return None
    component = get_registry().build(kind, entry["name"], **entry.get("config", {}))
    if "weights" in entry:
        file = folder / entry["weights"]
        if not file.is_file():
            raise ModelLoadError(f"Weights file {file} named in the manifest is missing.")
        state = load_file(str(file))
        _check_tensors(state, entry.get("tensors", {}), str(file))
        try:
            component.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsMismatchError(f"{file} does not fit {kind} {entry['name']!r}: {exc}") from exc
    return component


def load_pipeline(cls: type["SubjectPipeline"], folder: Path, **backend_options: Any) -> "SubjectPipeline":
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise ModelLoadError(f"{folder} has no {MANIFEST}; it was not written by SubjectPipeline.save_pretrained.")
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ModelLoadError(f"{manifest_file} has format {manifest.get('format')!r}; this smg-sdk reads {FORMAT_VERSION}.")
    backend_entry = manifest["backend"]
    _check_backend_files(folder / "backend", manifest.get("backend_tensors", {}))
    backend = get_registry().build(
        "backend", backend_entry["type"], manifest=backend_entry, folder=str(folder / "backend"), **backend_options
    )
    lists = {attr: [_rebuild(e, kind, folder) for e in manifest.get(attr, [])] for attr, kind in LIST_KINDS.items()}
    singles = {attr: _rebuild(manifest.get(attr), kind, folder) for attr, kind in SINGLE_KINDS.items()}
    return cls(backend, defaults=manifest.get("defaults"), **lists, **singles)
