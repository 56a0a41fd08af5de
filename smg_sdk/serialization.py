"""Saving and loading composed pipelines: a JSON manifest plus safetensors files.

Layout of a saved folder::

    smg_pipeline.json          components by registered name + config, tensor shapes, file sha256s
    backend/                   the backend's own files (base model and LoRA adapters)
    components/<kind>_<i>.safetensors   state dicts of components that are nn.Modules

The folder is written beside its destination and swapped into place, so an interrupted save
never leaves a half-written pipeline. Loading treats the folder as untrusted input (see
:mod:`smg_sdk.manifest` and ``docs/security.md``): the manifest is schema-checked, every file
is checksummed, no path leaves the folder without the caller's consent, nothing is imported
by name and remote code runs only if the caller passes ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .atomic import atomic_folder, recover_folder
from .errors import ModelLoadError, SMGError, WeightsMismatchError
from .configurable import captured_config, takes_no_options, uncapturable_reason
from .interfaces import component_name
from .manifest import (
    FORMAT_VERSION,
    LIST_KINDS,
    MANIFEST,
    REMOTE_CODE_KEY,
    ManifestError,
    SINGLE_KINDS,
    accepts_option,
    check_external,
    file_hashes,
    inside,
    read_manifest,
    validate_manifest,
    verify_files,
)
from .plugins.manager import get_registry

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import SubjectPipeline

__all__ = ["FORMAT_VERSION", "MANIFEST", "load_pipeline", "save_pipeline"]


def _identity(component: Any, kind: str, slot: str) -> tuple[str, dict[str, Any]]:
    """The registered name and options that rebuild ``component``; an SMGError naming it if there are none.

    Built by name, a component carries both. Built by hand, its class must be registered under
    one name of ``kind`` (a manifest names components, never modules) and its options must have
    been captured at construction (:mod:`smg_sdk.configurable`).
    """
    what = f"The {kind} {type(component).__name__} in {slot}"
    name = component_name(component, kind)
    if name is None:
        names = get_registry().names_of(kind, type(component))
        why = (f"its class is registered under several names ({', '.join(names)})" if names
               else "its class is not registered under any name")
        raise SMGError(
            f"{what} was built by hand and {why}, so a saved pipeline could not name it (a manifest names "
            f"registered components, never modules). Register the class once in a plugin "
            f"(registry.add_{kind}('my-name', {type(component).__name__})) or build it by name."
        )
    reason = uncapturable_reason(component)
    config = captured_config(component)
    if config is None and takes_no_options(type(component)):
        config = {}
    if reason is not None or config is None:
        raise SMGError(
            f"{what} ({kind} {name!r}) did not record the options it was built with "
            f"({reason or 'it does not derive from the smg_sdk interface of its kind'}), so it cannot be rebuilt; "
            f"derive it from smg_sdk.{_INTERFACES[kind]} and pass its options by name, or build it by name."
        )
    return name, config


_INTERFACES = {"encoder": "ConditionEncoder", "aggregator": "Aggregator", "rule": "AttentionRule",
               "schedule": "DenoisingSchedule", "planner": "Planner", "verifier": "Verifier"}


def _describe(component: Any, kind: str, slot: str, folder: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    name, config = _identity(component, kind, slot)
    # Remote code is the loader's decision, never the folder's: the flag is not saved.
    config = {k: v for k, v in config.items() if k != REMOTE_CODE_KEY}
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
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


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_saved_pipeline(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def save_pipeline(pipe: "SubjectPipeline", folder: Path) -> Path:
    """Write ``pipe`` to ``folder`` (replaced atomically; only an earlier saved pipeline is replaced)."""
    for attr, kind in {**LIST_KINDS, **SINGLE_KINDS}.items():  # a component that cannot be named fails first
        for i, component in enumerate(c for c in _as_list(getattr(pipe, attr)) if c is not None):
            _identity(component, kind, f"{attr}_{i}" if attr in LIST_KINDS else attr)
    with atomic_folder(folder, kind="pipeline", recognise=_is_saved_pipeline) as staging:
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
        manifest["files"] = file_hashes(staging)
        try:  # never write what load_pipeline would refuse
            validate_manifest(manifest)
        except ManifestError as exc:
            raise SMGError(f"This pipeline cannot be saved in a form that loads back: {exc}") from exc
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False))
    return Path(folder).expanduser().resolve()


def _tensor_index(root: Path) -> dict[str, dict[str, list]]:
    """Shape and dtype of every tensor in every safetensors file below ``root`` (headers only)."""
    index: dict[str, dict[str, list]] = {}
    for file in sorted(root.rglob("*.safetensors")):
        index[file.relative_to(root).as_posix()] = _header(file)
    return index


def _header(file: Path) -> dict[str, list]:
    """``{tensor: [shape, dtype]}`` from a safetensors header; a damaged file is a ModelLoadError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: [list(f.get_slice(k).get_shape()), _dtype_name(f.get_slice(k).get_dtype())] for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{file} is not a readable safetensors file ({exc}); restore it or re-save.") from exc


def _dtype_name(safetensors_dtype: str) -> str:
    names = {"F32": "torch.float32", "F16": "torch.float16", "BF16": "torch.bfloat16", "F64": "torch.float64",
             "I64": "torch.int64", "I32": "torch.int32", "BOOL": "torch.bool", "U8": "torch.uint8",
             "I8": "torch.int8", "I16": "torch.int16"}
    return names.get(safetensors_dtype, safetensors_dtype)


def _check_backend_files(root: Path, expected: dict[str, dict[str, list]]) -> None:
    for rel, tensors in expected.items():
        file = inside(root, rel, "backend_tensors key")
        if not file.is_file():
            raise ModelLoadError(f"Backend weights file {file} named in {MANIFEST} is missing; restore it or re-save.")
        _check_shapes(_header(file), tensors, str(file))
    unlisted = sorted(set(_tensor_index(root)) - set(expected)) if root.is_dir() else []
    if unlisted:
        raise ModelLoadError(f"{root / unlisted[0]} is not in {MANIFEST}'s backend_tensors; remove it or re-save.")


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


def _build(kind: str, entry: dict[str, Any], where: str, trust_remote_code: bool) -> Any:
    """The registered component of ``entry``; a config its factory rejects is a ModelLoadError."""
    registry = get_registry()
    config = dict(entry["config"])
    try:
        if trust_remote_code and accepts_option(registry.get(kind, entry["name"]), REMOTE_CODE_KEY):
            config[REMOTE_CODE_KEY] = True
        return registry.build(kind, entry["name"], **config)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's factory fed untrusted values; chained, never hidden
        raise ModelLoadError(
            f"{MANIFEST}: {where} ({kind} {entry['name']!r}) could not be built from its saved config: {exc}. "
            "Check the plugin that provides it is installed (`smg plugins`), or re-save the pipeline."
        ) from exc


def _rebuild(entry: dict[str, Any] | None, kind: str, where: str, folder: Path, trust_remote_code: bool) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if entry is None:
        return None
    component = _build(kind, entry, where, trust_remote_code)
    if "weights" in entry:
        file = inside(folder, entry["weights"], f"{where}.weights")
        if not isinstance(component, torch.nn.Module):
            raise ModelLoadError(f"{MANIFEST}: {where} names weights, but {kind} {entry['name']!r} has no tensors.")
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{file} is not a readable safetensors file ({exc}); re-save the pipeline.") from exc
        _check_shapes({k: [list(v.shape), str(v.dtype)] for k, v in state.items()}, entry["tensors"], str(file))
        try:
            component.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsMismatchError(f"{file} does not fit {kind} {entry['name']!r}: {exc}") from exc
    return component


def check_materialised(modules: dict[str, Any], where: str) -> None:
    """No parameter or buffer of any module is left on the ``meta`` device (weights missing from a file)."""
    for name, module in modules.items():
        if not isinstance(module, torch.nn.Module):
            continue
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_meta:
                raise ModelLoadError(
                    f"{where}: {name} tensor {key!r} was not in its weights file, so it has no value; the weights "
                    "are incomplete or belong to another model. Restore the files or re-save."
                )


def _check_defaults(defaults: dict[str, Any], size_multiple: int) -> None:
    from .types import Request

    try:
        Request(prompt="check", size_multiple=size_multiple, **defaults)
    except SMGError as exc:
        raise ModelLoadError(f"{MANIFEST}: defaults are not valid generation settings ({exc}); re-save.") from exc


def load_pipeline(
    cls: type["SubjectPipeline"],
    folder: Path,
    *,
    trust_remote_code: bool = False,
    allow_external: Sequence[str | Path] = (),
    **backend_options: Any,
) -> "SubjectPipeline":
    """Rebuild a saved pipeline after checking the folder (see the module docstring)."""
    folder = Path(folder).expanduser()
    recover_folder(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder with a {MANIFEST}; pass a folder written by save_pretrained.")
    folder = folder.resolve()
    manifest = read_manifest(folder)
    validate_manifest(manifest)
    _check_defaults(manifest["defaults"], 1)
    check_external(manifest, folder, allow_external)
    verify_files(folder, manifest["files"])
    backend_root = inside(folder, "backend", "backend folder")
    _check_backend_files(backend_root, manifest["backend_tensors"])
    backend = _build_backend(manifest["backend"], backend_root, backend_options)
    _check_defaults(manifest["defaults"], int(getattr(backend, "size_multiple", 16)))
    lists = {attr: [_rebuild(e, kind, f"{attr}[{i}]", folder, trust_remote_code) for i, e in enumerate(manifest[attr])]
             for attr, kind in LIST_KINDS.items()}
    singles = {attr: _rebuild(manifest[attr], kind, attr, folder, trust_remote_code)
               for attr, kind in SINGLE_KINDS.items()}
    components = {f"{attr}[{i}]": c for attr in LIST_KINDS for i, c in enumerate(lists[attr])}
    check_materialised({**components, **{k: v for k, v in singles.items() if v is not None}}, str(folder))
    return cls(backend, defaults=manifest["defaults"], **lists, **singles)


def _build_backend(entry: dict[str, Any], root: Path, options: dict[str, Any]) -> Any:
    registry = get_registry()
    try:
        factory = registry.get("backend", entry["type"])
    except SMGError as exc:
        raise ModelLoadError(f"{MANIFEST}: backend.type: {exc}") from exc
    return factory(manifest=entry, folder=str(root), **options)
