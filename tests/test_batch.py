"""``smg generate --batch``: real subprocesses of the CLI, one process and ``accelerate launch`` with two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image
from test_multiprocess_training import job_env, launch_args

GOOD = ["dog-grass", "line-000002", "ball"]
LINES = [
    {"id": "dog-grass", "prompt": "<1> on grass", "subjects": [{"image": "a.png", "class": "dog"}], "seed": 1},
    {"prompt": "<1> next to <2> on sand", "subjects": ["a.png:dog", "b.png:cat"], "seed": 2},
    {"prompt": "<1> on grass", "subjects": ["missing.png:dog"]},
    "not json",
    {"prompt": "a red ball", "sedd": 3},
    {"id": "ball", "prompt": "a red ball in snow", "seed": 4},
    {"id": "ball", "prompt": "the same id again"},
]
ERRORS = {  # line -> words its error record must hold
    3: "subjects[0] ('missing.png')", 4: "not valid JSON", 5: "unknown key 'sedd'",
    7: "id 'ball' is used by an earlier line",
}


def smg(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    prefix = launch_args(processes) + ["-m", "smg_sdk.cli"] if processes > 1 else [sys.executable, "-m", "smg_sdk.cli"]
    return subprocess.run([*prefix, *args], env=job_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    make_image(1).save(folder / "a.png")
    make_image(2).save(folder / "b.png")
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in LINES)
    (folder / "requests.jsonl").write_text(text + "\n\n")  # a trailing blank line is no request
    return folder / "requests.jsonl"


def run_batch(requests_file: Path, out: Path, processes: int = 1) -> dict:
    done = smg("generate", "--batch", str(requests_file), "--out", str(out), "--steps", "1", "--quiet",
               processes=processes)
    assert done.returncode == 0, done.stderr[-3000:]  # bad lines are recorded, not fatal
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def single(requests_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    summary = run_batch(requests_file, out)
    assert (summary["requests"], summary["done"], summary["generated"], summary["failed"]) == (7, 3, 3, 4)
    return out


def test_outputs_records_and_error_lines(single):
    for key in GOOD:
        record = json.loads((single / f"{key}.json").read_text())
        assert record["status"] == "ok" and record["image"] == f"{key}.png"
        assert (single / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    errors = {e["line"]: e["error"] for e in json.loads((single / "summary.json").read_text())["errors"]}
    assert errors.keys() == ERRORS.keys()
    for line, words in ERRORS.items():
        assert words in errors[line]
        assert json.loads((single / "errors" / f"line-{line:06d}.json").read_text())["error"] == errors[line]
    assert not [p for p in single.iterdir() if p.name.startswith(".") and p.name != ".smg-output"]  # no temp files


def test_rerun_skips_finished_and_redoes_unfinished(requests_file, single, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(single), str(out)], check=True)
    (out / "ball.json").unlink()  # as if the run had stopped between the image and its record
    before = {key: os.stat(out / f"{key}.png").st_mtime_ns for key in GOOD}
    summary = run_batch(requests_file, out)
    assert (summary["generated"], summary["skipped"], summary["done"], summary["failed"]) == (1, 2, 3, 4)
    assert os.stat(out / "dog-grass.png").st_mtime_ns == before["dog-grass"]  # untouched
    assert (out / "ball.png").read_bytes() == (single / "ball.png").read_bytes()


def test_two_processes_write_each_output_once_and_byte_identical(requests_file, single, tmp_path):
    out = tmp_path / "out"
    summary = run_batch(requests_file, out, processes=2)
    assert summary["processes"] == 2 and summary["generated"] == 3 and summary["done"] == 3
    assert [c["generated"] + c["failed"] for c in summary["per_process"]] == [4, 3]  # lines i mod 2
    makers = {json.loads((out / f"{key}.json").read_text())["process"] for key in GOOD}
    assert makers == {0, 1}
    for key in GOOD:
        assert (out / f"{key}.png").read_bytes() == (single / f"{key}.png").read_bytes(), key
    assert sorted(e["line"] for e in summary["errors"]) == sorted(ERRORS)


@pytest.mark.parametrize("args, words", [
    (["--batch", "no-such.jsonl", "--out", "o"], "--batch 'no-such.jsonl' is not a file"),
    (["--batch", "{requests}", "--out", "o.png"], "--out 'o.png' names an image"),
    (["--batch", "{requests}", "--out", "o", "--subject", "a.png"], "--subject goes in the requests file"),
    (["--batch", "{requests}", "--prompt", "a cat"], "not allowed with argument"),
])
def test_bad_batch_arguments_are_one_line_errors(requests_file, tmp_path, args, words):
    args = [a.replace("{requests}", str(requests_file)) for a in args]
    done = subprocess.run([sys.executable, "-m", "smg_sdk.cli", "generate", *args], env=job_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
