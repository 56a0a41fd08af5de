"""docs/gpu.md runs: its Python blocks in order (tiny presets, on the CPU here), its `smg` commands, and its
fit table is exactly what the code block that makes it prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from smg_sdk.cli import main

DOC = (Path(__file__).resolve().parents[1] / "docs" / "gpu.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_python_blocks_run_and_the_table_is_current(capsys):
    namespace: dict = {}
    assert len(blocks("python")) == 4
    for code in blocks("python"):
        exec(compile(code, "docs/gpu.md", "exec"), namespace)
    documented = DOC.split("<!-- fit-table -->\n")[1].split("\n<!-- /fit-table -->")[0]
    assert namespace["table"] == documented
    assert "'encoders[1].mllm.model'" in capsys.readouterr().out


def test_smg_commands_run(capsys):
    commands = [line for code in blocks("bash") for line in code.splitlines() if line.startswith("smg ")]
    assert len(commands) == 2
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0, line
        assert "peak device:" in capsys.readouterr().out
