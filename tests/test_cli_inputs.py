"""Issue 13: `smg generate` problems are one line, exit 2, and found before any model loads."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import make_image
from test_cli import smg
from test_user_inputs import bomb_png


def one_line_exit_2(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smg: error:"), proc.stderr
    return lines[0]


def test_aggregator_needing_options_is_one_line(tmp_path):
    line = one_line_exit_2(smg("generate", "--prompt", "a cat", "--aggregator", "lap", "--steps", "1",
                               "--out", str(tmp_path / "o.png")))
    assert "lap" in line


@pytest.mark.parametrize("case", ["directory", "file-in-path", "read-only"])
def test_bad_out_is_refused_before_the_model_loads(tmp_path, case):
    if case == "directory":
        out = tmp_path / "already.png"
        out.mkdir()
    elif case == "file-in-path":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "o.png"
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        out = locked / "o.png"
    # an unknown preset would be reported by the model-loading step; the --out error must come first
    line = one_line_exit_2(smg("generate", "--prompt", "a cat", "--preset", "no-such-preset", "--out", str(out)))
    assert "--out" in line


def test_decompression_bomb_subject_is_one_line(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    line = one_line_exit_2(smg("generate", "--prompt", "<1> on sand", "--subject", f"{bomb}:ball",
                               "--out", str(tmp_path / "o.png")))
    assert "bomb.png" in line and "pixels" in line


def test_directory_subject_says_folder(tmp_path):
    make_image(0).save(tmp_path / "dog.png")
    line = one_line_exit_2(smg("generate", "--prompt", "<1>", "--subject", str(tmp_path), "--out",
                               str(tmp_path / "o.png")))
    assert "folder" in line
