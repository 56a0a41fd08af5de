"""Every example script runs on the tiny presets and writes its images and contact sheet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "compose_all.py": ["best.png", "plan_0.png", "contact_sheet.png"],
    "multi_subject.py": ["best.png", "plan_0.png", "plans.json", "contact_sheet.png"],
    "single_subject.py": ["reference.png", "result_0.png", "contact_sheet.png"],
    "train_adapter.py": ["before.png", "after.png", "contact_sheet.png", "pipeline/smg_pipeline.json"],
}


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs(script, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out", str(out), "--steps", "2"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in EXAMPLES[script]:
        assert (out / name).is_file(), f"{script} did not write {name}"
    assert Image.open(out / "contact_sheet.png").size[0] > 0
    print(f"{script}: {elapsed:.1f} s")
