"""Shared tools of the security tests: a write audit, canaries, and a tiny saved pipeline.

- :func:`audited` records every file-system write Python makes (``open`` for writing,
  ``mkdir``, ``rename``, ``remove``, ``rmtree``...) through an audit hook (PEP 578), so a test
  can assert that nothing was written outside its temporary folder.
- :class:`Canary` plants code that must never run: a module importable as
  ``smg_canary_mod`` (what a manifest could name as ``module:callable``) and a model folder
  whose ``auto_map`` points at ``canary_remote.py`` (what ``trust_remote_code`` would import).
  Either writes a marker file when executed.
- :func:`build_saved_pipeline` saves the embedded tiny preset (cached references + a stream
  LoRA) once per module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.chmod", "os.symlink",
                "os.link", "shutil.copyfile", "shutil.copytree", "shutil.move", "os.rename", "shutil.unpack_archive"}


class _WriteAudit:
    """A process-wide audit hook; records write events while :attr:`active`."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        paths: list[Any] = []
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing:
                paths.append(path)
        elif event in _PATH_EVENTS:
            paths.extend(a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike)))
        for path in paths:
            if isinstance(path, int) or path is None:
                continue
            with self.lock:
                self.events.append((event, os.path.abspath(os.fsdecode(path))))


AUDIT = _WriteAudit()
sys.addaudithook(AUDIT)


@contextmanager
def audited() -> Iterator[list[tuple[str, str]]]:
    """Record file-system writes inside the block (bytecode writing is off meanwhile)."""
    bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    AUDIT.events = []
    AUDIT.active = True
    try:
        yield AUDIT.events
    finally:
        AUDIT.active = False
        sys.dont_write_bytecode = bytecode


def writes_outside(events: list[tuple[str, str]], *roots: Path) -> list[tuple[str, str]]:
    """The recorded writes whose path is not inside one of ``roots``."""
    resolved = [str(Path(r).resolve()) for r in roots]
    return [(e, p) for e, p in events if not any(p == r or p.startswith(r + os.sep) for r in resolved)]


CANARY_MODULE = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")

class Judge:
    def judge(self, images, request, plans):
        return [{{"x": 1.0}} for _ in images]

def build():
    pathlib.Path({marker!r}).write_text("called")
    return Judge()
'''

CANARY_REMOTE = '''
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

class CanaryConfig(Qwen2_5_VLConfig):
    pass

class CanaryModel(Qwen2_5_VLForConditionalGeneration):
    config_class = CanaryConfig
'''


class Canary:
    """Code that must never run while an untrusted folder is read; :attr:`ran` says whether it did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "CANARY_RAN"
        code = root / "code"
        code.mkdir(parents=True)
        (code / "smg_canary_mod.py").write_text(CANARY_MODULE.format(marker=str(self.marker)))
        self.code = code
        self.remote_model = root / "remote_model"

    def make_remote_model(self) -> Path:
        """A copy of the tiny Qwen2.5-VL whose config asks transformers to import ``canary_remote.py``."""
        from smg_sdk.presets.tiny import tiny_qwen_vl_path

        shutil.copytree(tiny_qwen_vl_path(), self.remote_model)
        config = json.loads((self.remote_model / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "canary_remote.CanaryConfig",
                              "AutoModelForImageTextToText": "canary_remote.CanaryModel"}
        (self.remote_model / "config.json").write_text(json.dumps(config))
        (self.remote_model / "canary_remote.py").write_text(CANARY_REMOTE.format(marker=str(self.marker)))
        return self.remote_model

    @property
    def ran(self) -> bool:
        return self.marker.exists() or "smg_canary_mod" in sys.modules or "canary_remote" in sys.modules


# ---------------------------------------------------------------------------------- saved pipelines


def build_saved_pipeline(folder: Path) -> Path:
    """The tiny preset (cached references, a stream LoRA ``subject``) saved to ``folder``."""
    from smg_sdk import SubjectPipeline

    from conftest import use_subject_adapter

    pipe = SubjectPipeline.from_preset("tiny", reference_mode="cached", position="omini")
    use_subject_adapter(pipe)
    return pipe.save_pretrained(folder)


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "smg_pipeline.json").read_text())


def write_manifest(folder: Path, manifest: Any) -> None:
    (folder / "smg_pipeline.json").write_text(json.dumps(manifest, indent=1))


def edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = read_manifest(folder)
    edit(manifest)
    write_manifest(folder, manifest)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rehash(folder: Path, *rels: str) -> None:
    """Record the current sha256 of ``rels`` in the manifest, as someone editing files on purpose would."""
    def edit(manifest: dict[str, Any]) -> None:
        if "files" not in manifest:  # a manifest without checksums (older format)
            return
        for rel in rels:
            if (folder / rel).is_file():
                manifest["files"][rel] = sha256(folder / rel)
            else:
                manifest["files"].pop(rel, None)

    edit_manifest(folder, edit)


def flip_bytes(path: Path, offset_from_end: int = 64, count: int = 4) -> None:
    """Flip ``count`` bytes near the end of a file (tensor data in a safetensors file)."""
    data = bytearray(path.read_bytes())
    for i in range(count):
        data[-offset_from_end + i] ^= 0xFF
    path.write_bytes(bytes(data))
