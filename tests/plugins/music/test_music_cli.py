"""End to end: ``smg generate --planner music --candidates 4`` as a real subprocess on the tiny preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw
from smg_sdk.presets.tiny import TINY_DEFAULTS

DEFAULT_SIZE = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"])  # the tiny preset's default image size

ROOT = Path(__file__).resolve().parents[3]


def shape(path: Path, colour, half: int, circle: bool = False) -> None:
    image = Image.new("RGB", (64, 64), (236, 232, 222))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if circle else draw.rectangle)((32 - half, 32 - half, 32 + half, 32 + half), fill=colour)
    image.save(path)


def test_generate_with_music_planner_writes_image_sheet_and_plans(tmp_path):
    shape(tmp_path / "a.png", (150, 90, 40), 26)
    shape(tmp_path / "b.png", (120, 120, 130), 20)
    shape(tmp_path / "c.png", (220, 30, 30), 9, circle=True)
    out = tmp_path / "music" / "out.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "smg_sdk.cli", "generate", "--preset", "tiny",
         "--prompt", "<1> left of <2>, <3> above them",
         "--subject", f"{tmp_path / 'a.png'}:dog", "--subject", f"{tmp_path / 'b.png'}:cat",
         "--subject", f"{tmp_path / 'c.png'}:ball", "--planner", "music", "--candidates", "4",
         "--steps", "2", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "added rule music-layout" in proc.stdout and "verifier clip-text" in proc.stdout
    assert Image.open(out).size == DEFAULT_SIZE
    sheet = Image.open(out.with_name("out_candidates.png"))
    assert sheet.size[0] == 4 * 128  # four candidates side by side
    records = json.loads(out.with_name("out_plans.json").read_text())
    assert sorted(r["candidate"] for r in records) == [0, 1, 2, 3]
    assert [r["rank"] for r in records] == [0, 1, 2, 3]
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    for record in records:
        assert Image.open(out.with_name(record["grid"])).size[0] >= 8 * 24
        assert record["notes"]["source"] == "heuristic-fallback"  # random tiny Qwen: retries, then fallback
        assert record["notes"]["errors"] and record["notes"]["fallback_reason"]
        layout = record["layout"]
        assert len(layout) == 8 and {1, 2, 3} <= {v for row in layout for v in row}
        assert str(out.with_name(record["grid"])) in proc.stdout
    assert not list(out.parent.glob(".*"))  # atomic writes leave no temp files
