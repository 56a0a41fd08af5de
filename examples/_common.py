"""Shared bits of the example scripts: subject images and output folders.

Examples use DreamBench photos from ../shared/dreambench when that folder is beside the
checkout, and simple drawn shapes otherwise, so they run anywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smg_sdk import Subject
from smg_sdk.demo import synthetic_subject
from smg_sdk.images import load_image

DREAMBENCH = Path(__file__).resolve().parents[2] / "shared" / "dreambench" / "images"
CLASSES = {"dog": "dog", "cat": "cat", "backpack": "backpack", "teapot": "teapot", "duck_toy": "duck toy"}


def subjects(names: list[str]) -> list[Subject]:
    """DreamBench subjects by folder name if available, else drawn stand-ins (same count)."""
    out = []
    for i, name in enumerate(names):
        photo = DREAMBENCH / name / "00.jpg"
        if photo.is_file():
            out.append(Subject(load_image(photo, str(photo)), CLASSES.get(name, name.replace("_", " "))))
        else:
            out.append(synthetic_subject(i))
    return out


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def out_dir(path: str) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
