"""Training checkpoints: trainable tensors as safetensors, optimizer state, step; atomic.

A checkpoint is a folder ``checkpoint-<step>/`` written beside its final name and renamed
into place, so a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder
from ..errors import ModelLoadError

PATTERN = re.compile(r"checkpoint-(\d+)$")


def save_checkpoint(root: Path, step: int, tensors: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                    meta: dict[str, Any]) -> Path:
    final = root / f"checkpoint-{step}"
    with atomic_folder(final) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / "trainable.safetensors"))
        buffer = io.BytesIO()
        torch.save(optimizer_state, buffer)  # read back with weights_only=True: tensors and plain values only
        (staging / "optimizer.pt").write_bytes(buffer.getvalue())
        (staging / "state.json").write_text(json.dumps({"step": step, **meta}, indent=2, sort_keys=True))
    return final


def latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := PATTERN.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    for name in ("trainable.safetensors", "optimizer.pt", "state.json"):
        if not (folder / name).is_file():
            raise ModelLoadError(f"Checkpoint {folder} is incomplete: {name} is missing.")
    tensors = load_file(str(folder / "trainable.safetensors"))
    optimizer_state = torch.load(folder / "optimizer.pt", weights_only=True)
    state = json.loads((folder / "state.json").read_text())
    return tensors, optimizer_state, state
