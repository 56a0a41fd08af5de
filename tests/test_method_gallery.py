"""scripts/method_gallery.py: one row per method plugin (references | baseline | method | truth), as the README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from smg_sdk.gallery import comparison_rows, gallery_rows

ROOT = Path(__file__).resolve().parents[1]


def test_comparison_rows_line_up_labelled_images_after_the_references():
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    sheet = comparison_rows([([red, red], [(blue, "a"), (None, "b")], "two refs"),
                             ([red], [(blue, "a"), (blue, "b")], "one ref")], cell=32, gap=4)
    assert sheet.size == (4 * 36 + 4, 2 * (32 + 18 + 4) + 4)
    pixels = np.asarray(sheet)
    centre = lambda row, col: tuple(pixels[4 + row * 54 + 18 + 16, 4 + col * 36 + 16])  # noqa: E731
    assert centre(0, 1) == (255, 0, 0) and centre(0, 2) == (0, 0, 255) and centre(0, 3) == (255, 255, 255)
    assert centre(1, 1) == (255, 255, 255) and centre(1, 3) == (0, 0, 255)  # one ref: a blank, then the outputs
    same = gallery_rows([([red], blue, None, "x")], cell=32, gap=4)
    assert np.array_equal(np.asarray(same), np.asarray(comparison_rows([([red], [(blue, "output"), (None, "truth")], "x")],
                                                                       cell=32, gap=4)))


def test_method_gallery_script_writes_one_row_per_method(tmp_path):
    out = tmp_path / "gallery.png"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "method_gallery.py"), "--out", str(out), "--steps", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert Image.open(out).size == (6 * 134 + 6, 3 * 152 + 6)  # 3 references + baseline, method, truth; 3 methods
