"""Reading a saved pipeline's manifest as untrusted input: parse, schema-check, confine, verify.

A saved folder may come from anyone, so nothing in it is used before this module has
checked it:

- :func:`read_manifest` parses ``smg_pipeline.json`` with a size cap and strict JSON (no
  ``NaN``/``Infinity``, no duplicate keys, no unbounded nesting);
- :func:`validate_manifest` checks every key and type (unknown keys are refused) and that no
  component config carries ``trust_remote_code`` (only the caller of ``from_pretrained`` can
  turn remote code on);
- :func:`inside` resolves a relative path and refuses one that leaves the folder;
- :func:`verify_files` checks the folder holds exactly the files the manifest lists, none a
  symlink or special file, each with the recorded sha256;
- :func:`external_references` lists every path the manifest names outside the folder, which
  loads only if the caller allows it (``allow_external``).

Every failure is a :class:`~smg_sdk.errors.ModelLoadError` that names the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

from .errors import ModelLoadError

MANIFEST = "smg_pipeline.json"
FORMAT_VERSION = 2
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
LIST_KINDS = {"encoders": "encoder", "aggregators": "aggregator", "rules": "rule"}
SINGLE_KINDS = {"schedule": "schedule", "planner": "planner", "verifier": "verifier"}
REMOTE_CODE_KEY = "trust_remote_code"
DEFAULT_KEYS = ("height", "width", "num_inference_steps", "guidance_scale", "num_images_per_prompt",
                "negative_prompt", "true_cfg_scale", "negative_references", "seed")
DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16", "torch.float64", "torch.int64", "torch.int32",
          "torch.bool", "torch.uint8", "torch.int8", "torch.int16", "F8_E4M3", "F8_E5M2")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_ADAPTER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RESAVE = "restore the folder from its original save, or re-save the pipeline with save_pretrained"


class ManifestError(ModelLoadError):
    """``smg_pipeline.json`` is not a valid manifest (bad JSON, wrong type, unknown key...)."""


def _fail(where: str, what: str, hint: str = _RESAVE) -> ManifestError:
    return ManifestError(f"{MANIFEST}: {where} {what}; {hint}.")


# ---------------------------------------------------------------------------------- parsing


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed manifest of ``folder`` (a dict), or :class:`ManifestError`."""
    file = folder / MANIFEST
    if file.is_symlink():
        raise ModelLoadError(f"{file} is a symbolic link; a saved pipeline's manifest must be a file in the folder.")
    if not file.is_file():
        raise ModelLoadError(f"{folder} has no {MANIFEST}; it was not written by SubjectPipeline.save_pretrained.")
    size = file.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise _fail("the file", f"is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit for a manifest")
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"), parse_constant=_no_constants,
                              object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail("the file", f"is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(manifest, dict):
        raise _fail("the file", f"holds a JSON {type(manifest).__name__}, not an object")
    return manifest


# ---------------------------------------------------------------------------------- schema


def _object(value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a JSON object, not {_kind(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise _fail(where, f"lacks the key {missing[0]!r}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise _fail(where, f"has the unknown key {unknown[0]!r}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"must be an integer from {low} to {high}, not {value!r}"[:300])
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"must be a finite number, not {value!r}"[:300])
    return float(value)


def _string(value: Any, where: str, pattern: re.Pattern[str] | None = None, max_len: int = 4096) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
        raise _fail(where, f"must be a non-empty string, not {_kind(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(where, f"is {value[:80]!r}, not a valid name")
    return value


def relative_path(value: Any, where: str, suffix: str | None = None) -> str:
    """``value`` if it is a clean relative POSIX path (no ``..``, not absolute), else :class:`ManifestError`."""
    text = _string(value, where, max_len=1024)
    parts = text.split("/")
    if text.startswith(("/", "~")) or "\\" in text or re.match(r"[A-Za-z]:", text) or any(
        p in ("", ".", "..") for p in parts
    ):
        raise _fail(where, f"is {text[:120]!r}, which is not a path inside the saved folder",
                    "paths in a manifest are relative to the folder and may not leave it")
    if suffix is not None and not text.endswith(suffix):
        raise _fail(where, f"is {text[:120]!r}, not a {suffix} file", "weights load from safetensors files only")
    return text


def _json_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise _fail(where, f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if key == REMOTE_CODE_KEY:
                raise _fail(f"{where}.{key}", "is set in the manifest",
                            "a saved folder cannot turn on remote code; if you trust this model's own code, pass "
                            "SubjectPipeline.from_pretrained(folder, trust_remote_code=True) yourself")
            _json_value(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, "is not a finite number")


def _tensor_index(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object of tensor name -> [shape, dtype], not {_kind(value)}")
    for key, spec in value.items():
        _string(key, f"{where} key", max_len=1024)
        here = f"{where}[{key[:80]!r}]"
        if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list)):
            raise _fail(here, "must be [shape, dtype]")
        for i, dim in enumerate(spec[0]):
            _int(dim, f"{here} shape[{i}]", 0, 2**40)
        if spec[1] not in DTYPES:
            raise _fail(here, f"has the unknown dtype {str(spec[1])[:40]!r}")


def _component(value: Any, where: str) -> None:
    entry = _object(value, where, ("name", "config"), ("weights", "tensors"))
    _string(entry["name"], f"{where}.name", _NAME, 200)
    if not isinstance(entry["config"], dict):
        raise _fail(f"{where}.config", f"must be an object, not {_kind(entry['config'])}")
    _json_value(entry["config"], f"{where}.config")
    if ("weights" in entry) != ("tensors" in entry):
        raise _fail(where, "must have both 'weights' and 'tensors' or neither")
    if "weights" in entry:
        relative_path(entry["weights"], f"{where}.weights", ".safetensors")
        _tensor_index(entry["tensors"], f"{where}.tensors")


def _backend(value: Any) -> None:
    entry = _object(value, "backend", ("type", "max_sequence_length", "adapters"), ("base", "source"))
    _string(entry["type"], "backend.type", _NAME, 200)
    _int(entry["max_sequence_length"], "backend.max_sequence_length", 1, 4096)
    if ("base" in entry) == ("source" in entry):
        raise _fail("backend", "must name exactly one of 'base' (a folder inside) or 'source' (a model elsewhere)")
    if "base" in entry:
        relative_path(entry["base"], "backend.base")
    else:
        _string(entry["source"], "backend.source")
    adapters = entry["adapters"]
    if not isinstance(adapters, dict):
        raise _fail("backend.adapters", f"must be an object, not {_kind(adapters)}")
    for name, info in adapters.items():
        here = f"backend.adapters[{name[:80]!r}]"
        _string(name, here, _ADAPTER, 100)
        info = _object(info, here, ("file", "stream", "weight"))
        relative_path(info["file"], f"{here}.file", ".safetensors")
        if not isinstance(info["stream"], bool):
            raise _fail(f"{here}.stream", "must be true or false")
        _number(info["weight"], f"{here}.weight")


def _defaults(value: Any) -> None:
    defaults = _object(value, "defaults", (), DEFAULT_KEYS)
    for key, item in defaults.items():
        if key == "negative_prompt":
            if item is not None and item != "":  # "" is the usual negative prompt of true CFG (as in diffusers)
                _string(item, "defaults.negative_prompt", max_len=100_000)
        elif key in ("guidance_scale", "true_cfg_scale"):
            _number(item, f"defaults.{key}")
        elif key == "negative_references":
            if not isinstance(item, bool):
                raise _fail("defaults.negative_references", "must be true or false")
        elif not (key == "seed" and item is None):
            _int(item, f"defaults.{key}", -(2**63) if key == "seed" else 1, 2**64 - 1 if key == "seed" else 16384)


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Check every key and type of a parsed manifest; raises :class:`ManifestError`."""
    top = ("format", "defaults", "backend", "backend_tensors", "files", *LIST_KINDS, *SINGLE_KINDS)
    _object(manifest, "the top level", top)
    if manifest["format"] != FORMAT_VERSION:
        raise _fail("format", f"is {str(manifest['format'])[:40]!r}, but this smg-sdk reads format {FORMAT_VERSION}",
                    "re-save the pipeline with this version of smg-sdk")
    _defaults(manifest["defaults"])
    _backend(manifest["backend"])
    tensors = manifest["backend_tensors"]
    if not isinstance(tensors, dict):
        raise _fail("backend_tensors", f"must be an object, not {_kind(tensors)}")
    for rel, index in tensors.items():
        relative_path(rel, "backend_tensors key", ".safetensors")
        _tensor_index(index, f"backend_tensors[{rel[:80]!r}]")
    for attr in LIST_KINDS:
        if not isinstance(manifest[attr], list):
            raise _fail(attr, f"must be an array, not {_kind(manifest[attr])}")
        for i, entry in enumerate(manifest[attr]):
            _component(entry, f"{attr}[{i}]")
    for attr in SINGLE_KINDS:
        if manifest[attr] is not None:
            _component(manifest[attr], attr)
    files = manifest["files"]
    if not isinstance(files, dict):
        raise _fail("files", f"must be an object of path -> sha256, not {_kind(files)}")
    for rel, digest in files.items():
        relative_path(rel, "files key")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _fail(f"files[{rel[:80]!r}]", "must be a sha256 in lower-case hex")


# ---------------------------------------------------------------------------------- files


def inside(folder: Path, rel: str, what: str) -> Path:
    """``folder / rel`` resolved, refusing a path (or symlink) that leads outside ``folder``."""
    root = folder.resolve()
    path = (root / relative_path(rel, what)).resolve()
    if path != root and root not in path.parents:
        raise ModelLoadError(f"{what} {rel!r} in {folder} leads outside the folder (to {path}); refusing to follow it.")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: Path, skip: Iterable[str] = (MANIFEST,)) -> list[str]:
    """Relative POSIX paths of the regular files under ``folder``; refuses symlinks and special files."""
    skipped, out = set(skip), []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            mode = path.lstat().st_mode
            rel = PurePosixPath(path.relative_to(folder)).as_posix()
            if stat.S_ISLNK(mode):
                raise ModelLoadError(f"{path} is a symbolic link; a saved pipeline folder holds only its own files. "
                                     "Replace the link with the file it points to, or re-save the pipeline.")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ModelLoadError(f"{path} is not a regular file; a saved pipeline folder holds only files "
                                     "and folders. Remove it or re-save the pipeline.")
            if stat.S_ISREG(mode) and rel not in skipped:
                out.append(rel)
    return sorted(out)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, by relative path."""
    return {rel: sha256_file(folder / rel) for rel in list_files(folder)}


def verify_files(folder: Path, expected: dict[str, str]) -> None:
    """The folder holds exactly the files in ``expected``, each with its sha256; else :class:`ModelLoadError`."""
    actual = list_files(folder)
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise ModelLoadError(f"{folder / missing[0]} is listed in {MANIFEST} but missing (deleted or renamed); "
                             f"the folder is incomplete: {_RESAVE}.")
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ModelLoadError(f"{folder / extra[0]} is not listed in {MANIFEST}, so it was not written by "
                             "save_pretrained; remove it, or re-save the pipeline.")
    for rel in sorted(expected):
        if sha256_file(folder / rel) != expected[rel]:
            raise ModelLoadError(f"{folder / rel} does not match the sha256 recorded in {MANIFEST}: the file was "
                                 f"damaged or edited after saving; {_RESAVE}.")


# ---------------------------------------------------------------------------------- external paths

_PATH_OPTION = re.compile(r"(.*_)?(path|dir|file|folder)$|model")


def _path_like(key: str, value: str) -> bool:
    """Whether a config value names a file-system location (not a plain name like ``"tiny"``)."""
    if value.startswith(("/", "~", ".")) or re.match(r"[A-Za-z]:[\\/]", value) or ".." in re.split(r"[\\/]", value):
        return True
    return bool(_PATH_OPTION.fullmatch(key)) and ("/" in value or "\\" in value)


def external_references(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, path)`` for the backend source and every path-like component config value."""
    refs: list[tuple[str, str]] = []
    if "source" in manifest["backend"]:
        refs.append(("backend.source", manifest["backend"]["source"]))

    def walk(value: Any, where: str, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}", k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", key)
        elif isinstance(value, str) and _path_like(key, value):
            refs.append((where, value))

    for attr in LIST_KINDS:
        for i, entry in enumerate(manifest[attr]):
            walk(entry["config"], f"{attr}[{i}].config", "")
    for attr in SINGLE_KINDS:
        if manifest[attr] is not None:
            walk(manifest[attr]["config"], f"{attr}.config", "")
    return refs


def check_external(manifest: dict[str, Any], folder: Path, allowed: Sequence[str | os.PathLike]) -> None:
    """Every external reference must lie in (or be) one of ``allowed``; else :class:`ModelLoadError`."""
    roots = [Path(a).expanduser().resolve() for a in allowed]
    for where, value in external_references(manifest):
        try:
            path = Path(value).expanduser()
            path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        except (ValueError, OSError, RuntimeError) as exc:
            raise _fail(where, f"is not a usable path ({exc})") from None
        if any(path == root or root in path.parents for root in roots):
            continue
        raise ModelLoadError(
            f"{MANIFEST} in {folder}: {where} names {value!r}, outside the saved folder. A saved folder may only "
            f"point elsewhere with your consent: if you trust that location, pass "
            f"SubjectPipeline.from_pretrained(folder, allow_external=[{str(path)!r}])."
        )


def accepts_option(factory: Callable[..., Any], option: str) -> bool:
    """Whether ``factory`` declares a parameter named ``option`` (``**kwargs`` does not count)."""
    import inspect

    try:
        return option in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
