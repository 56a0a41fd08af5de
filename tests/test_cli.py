"""The ``smg`` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from conftest import make_image
from smg_sdk.presets.tiny import TINY_DEFAULTS

DEFAULT_SIZE = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"])  # the tiny preset's default image size

ROOT = Path(__file__).resolve().parents[1]


def smg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "smg_sdk.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_generate_writes_image(tmp_path):
    make_image(0).save(tmp_path / "dog.png")
    make_image(1).save(tmp_path / "cat.png")
    out = tmp_path / "out" / "result.png"
    proc = smg("generate", "--prompt", "<1> next to <2>", "--subject", f"{tmp_path / 'dog.png'}:dog",
               "--subject", str(tmp_path / "cat.png"), "--out", str(out), "--steps", "2", "--seed", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == DEFAULT_SIZE
    assert str(out) in proc.stdout


def test_generate_bad_subject_is_one_line(tmp_path):
    proc = smg("generate", "--prompt", "<1> on a beach", "--subject", str(tmp_path / "missing.png"),
               "--out", str(tmp_path / "o.png"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.png" in lines[0]


def test_generate_bad_request_is_one_line(tmp_path):
    make_image(0).save(tmp_path / "dog.png")
    proc = smg("generate", "--prompt", "<1> and <2>", "--subject", str(tmp_path / "dog.png"),
               "--out", str(tmp_path / "o.png"), "--height", "50")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("smg: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_bad_arguments_exit_nonzero():
    proc = smg("generate")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_demo_writes_gallery(tmp_path):
    proc = smg("demo", "--out", str(tmp_path / "gallery"), "--steps", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    index = json.loads((tmp_path / "gallery" / "index.json").read_text())
    assert len(index) >= 4
    for job in index:
        assert Image.open(tmp_path / "gallery" / job["file"]).size == DEFAULT_SIZE
    assert (tmp_path / "gallery" / "gallery.png").is_file()
    assert str(tmp_path / "gallery") in proc.stdout


def test_plugins_lists_builtin():
    proc = smg("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    infos = {p["name"]: p for p in json.loads(proc.stdout)}
    builtin = infos["smg_sdk.builtin"]
    assert "flux-text" in builtin["components"]["encoder"] and "tiny" in builtin["components"]["preset"]


def test_preset_options_reach_the_preset(tmp_path):
    make_image(0).save(tmp_path / "dog.png")
    ok = smg("generate", "--prompt", "<1> on grass", "--subject", str(tmp_path / "dog.png"), "--option",
             "reference_mode=cached", "--option", "position=uno", "--steps", "1", "--out", str(tmp_path / "o.png"),
             "--quiet")
    assert ok.returncode == 0, ok.stderr
    typo = smg("generate", "--prompt", "a cat", "--option", "referense_mode=cached", "--out", str(tmp_path / "t.png"))
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "referense_mode" in typo.stderr and len(typo.stderr.strip().splitlines()) == 1
