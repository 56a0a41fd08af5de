"""The trainer under ``accelerate launch`` with 2 CPU processes (gloo) against one process.

Both runs train the tiny FLUX's subject adapter with the same global batch (4 samples a step;
2 per process when there are two) through ``tests/jobs/train_job.py``, as real subprocesses.

Tolerance: the two runs compute the same sums in a different order (each process adds its own
rows, then gloo adds the two shards), so values agree to float32 rounding, not bit for bit.
We require losses within ``rtol=1e-4, atol=1e-6`` and step-0 gradients within
``rtol=1e-4, atol=1e-7`` (measured: ~1e-7 relative). Trained tensors are compared as a whole:
the relative Frobenius distance of the two runs' weight updates must be below 1e-3. (Element by
element is the wrong test: AdamW divides by the root of the second moment, so an entry whose
gradient is ~1e-8 moves by a rounding-sensitive amount; measured up to 9e-5 on single entries.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

JOB = Path(__file__).parent / "jobs" / "train_job.py"
LOSS_TOL = {"rtol": 1e-4, "atol": 1e-6}
UPDATE_TOL = 1e-3


def launch_args(num_processes: int) -> list[str]:
    """``accelerate launch`` for N local CPU processes: torchrun starts them, the SDK asks for CPU (gloo)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(num_processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0"]


def job_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_job(out: Path, steps: int, processes: int, perturb: bool = False) -> list[dict]:
    """Run the job; returns each process's result record, by rank."""
    prefix = launch_args(processes) if processes > 1 else [sys.executable]
    cmd = [*prefix, str(JOB), "--out", str(out), "--steps", str(steps), "--batch-size", "4"]
    cmd += ["--perturb"] if perturb else []
    done = subprocess.run(cmd, env=job_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"result-{rank}.json").read_text()) for rank in range(processes)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, object]:
    """One process for 4 steps; two processes for 2 steps (the second one starting from other adapter
    weights, which the trainer replaces with the main process's), then resumed to 4."""
    root = tmp_path_factory.mktemp("mp-train")
    single = run_job(root / "single", 4, 1)
    first = run_job(root / "double", 2, 2, perturb=True)
    first_grads = [load_file(str(root / "double" / f"grad-{r}.safetensors")) for r in range(2)]
    resumed = run_job(root / "double", 4, 2)
    return {"root": root, "single": single, "first": first, "resumed": resumed, "first_grads": first_grads}


def test_gradients_are_averaged_over_the_global_batch(runs):
    single = load_file(str(runs["root"] / "single" / "grad-0.safetensors"))
    for grads in runs["first_grads"]:  # each process holds the same, full-batch gradient
        assert grads.keys() == single.keys()
        for name, value in single.items():
            torch.testing.assert_close(grads[name], value, rtol=1e-4, atol=1e-7)


def test_loss_curve_matches_single_process_across_a_resume(runs):
    single = runs["single"][0]["losses"]
    for record in runs["first"]:
        assert record["processes"] == 2
        torch.testing.assert_close(torch.tensor(record["losses"]), torch.tensor(single[:2]), **LOSS_TOL)
    for record in runs["resumed"]:  # the resumed run continues exactly where the first stopped
        assert record["last_step"] == 4
        torch.testing.assert_close(torch.tensor(record["losses"]), torch.tensor(single[2:]), **LOSS_TOL)


def test_checkpoints_are_written_once_by_the_main_process(runs):
    assert [r["checkpoints_written"] for r in runs["first"]] == [[2], []]
    assert [r["checkpoints_written"] for r in runs["resumed"]] == [[4], []]
    folder = runs["root"] / "double" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", "checkpoint-4"]  # no staging left over


def test_trained_tensors_match_single_process(runs):
    folder = "checkpoints/checkpoint-{}/trainable.safetensors"
    start = load_file(str(runs["root"] / "double" / folder.format(2)))
    single = load_file(str(runs["root"] / "single" / folder.format(4)))
    double = load_file(str(runs["root"] / "double" / folder.format(4)))
    assert single.keys() == double.keys()
    moved_single = torch.cat([(single[k] - start[k]).flatten() for k in sorted(single)])
    moved_double = torch.cat([(double[k] - start[k]).flatten() for k in sorted(single)])
    assert moved_single.norm() > 0
    assert (moved_double - moved_single).norm() / moved_single.norm() < UPDATE_TOL


def test_batch_smaller_than_processes_is_refused(tmp_path):
    cmd = [*launch_args(2), str(JOB), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "1"]
    done = subprocess.run(cmd, env=job_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "batch_size=1 is smaller than the 2 processes" in done.stderr
