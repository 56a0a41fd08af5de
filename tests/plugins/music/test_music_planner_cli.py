"""``smg music-planner train|eval``: the plugin's commands, run through ``smg``'s own entry point."""

from __future__ import annotations

import json

from smg_sdk.cli import main

TINY_RUN = ["--steps", "2", "--batch-size", "1", "--pool-size", "3", "--subjects", "1,2", "--eval-samples", "2",
            "--eval-every", "1", "--checkpoint-every", "1", "--quiet"]


def test_train_resumes_refuses_to_restart_and_writes_the_planner(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["music-planner", "train", "--out", str(out), *TINY_RUN]) == 0
    assert (out / "planner" / "model.safetensors").is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history["losses"]) == 2 and [e["step"] for e in history["evaluations"]] == [1, 2]

    assert main(["music-planner", "train", "--out", str(out), *TINY_RUN]) == 2  # checkpoints there: no --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["music-planner", "train", "--out", str(out), *TINY_RUN, "--resume", "--steps", "3"]) == 0
    assert "step 3 of 3" in capsys.readouterr().out
    assert len(json.loads((out / "history.json").read_text())["losses"]) == 3  # one more step, appended


def test_eval_prints_the_table(tmp_path, capsys):
    args = ["music-planner", "eval", "--samples", "2", "--subjects", "1", "--unseen-subjects", "3", "--batch-size", "2",
            "--quiet", "--out", str(tmp_path / "eval")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| planner | heldout | 1 | 2 |" in out and "| planner | unseen | 3 | 2 |" in out
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["config"]["samples"] == 2


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    for extra, word in [(["--subjects", "0,9"], "--subjects"), (["--decimation", "2"], "--decimation"),
                        (["--budget-minutes", "0"], "--budget-minutes"), (["--steps", "0"], "--steps")]:
        assert main(["music-planner", "train", "--out", str(tmp_path / "r"), *extra]) == 2
        assert word in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing made before the arguments were checked
