"""Throughput with 1 and 2 processes under ``accelerate launch``: batch generation and training.

Batch generation: ``smg generate --batch`` over ``--requests`` SubjectWorld requests (tiny preset,
2 subjects, ``--steps`` denoising steps); throughput = requests / the slowest process's generating
seconds (model loading excluded, from ``summary.json``). Training: ``tests/jobs/train_job.py``
(the tiny FLUX's subject adapter, global batch 4) for ``--train-steps`` steps; throughput =
samples / ``train()`` seconds. Every process runs one torch thread.

Run: ``python benchmarks/scaling.py`` (both cores free), or ``--pin 1`` to put every process on
core 1 (when core 0 is busy: then 2 processes share one core and the table shows only overhead).
Prints a Markdown table of one run, and the command lines it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ["accelerate", "launch", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no", "--main_process_port", "0", "--num_processes"]


def command(processes: int, args: list[str], module: bool, pin: str | None) -> list[str]:
    """The command line for ``processes`` processes (``accelerate launch`` for more than one)."""
    head = [*LAUNCH, str(processes)] + (["-m"] if module else []) if processes > 1 else \
        ([sys.executable, "-m"] if module else [sys.executable])
    return (["taskset", "-c", pin] if pin else []) + head + args


def run(cmd: list[str]) -> None:
    print("$ OMP_NUM_THREADS=1 " + shlex.join(cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])


def write_requests(folder: Path, count: int, steps: int) -> Path:
    """``count`` held-out SubjectWorld requests of two subjects, with their references as files."""
    from smg_sdk.data.subjectworld import SubjectWorld

    world = SubjectWorld("heldout", "reference", seed=0, subjects=(2,))
    lines = []
    for i in range(count):
        sample = world[i]
        subjects = []
        for k, (image, part) in enumerate(zip(sample.references, sample.scene.subjects)):
            image.save(folder / f"{i}-{k}.png")
            subjects.append({"image": f"{i}-{k}.png", "class": part.identity.shape})
        lines.append(json.dumps({"id": f"r{i}", "prompt": sample.prompt, "subjects": subjects, "seed": i,
                                 "steps": steps}))
    path = folder / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def batch_rate(processes: int, requests: Path, out: Path, count: int, pin: str | None) -> float:
    run(command(processes, ["smg_sdk.cli", "generate", "--batch", str(requests), "--out", str(out), "--quiet"],
                True, pin))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == count and summary["generated"] == count, summary
    return count / max(p["seconds"] for p in summary["per_process"])


def train_rate(processes: int, out: Path, steps: int, pin: str | None) -> float:
    job = str(ROOT / "tests" / "jobs" / "train_job.py")
    run(command(processes, [job, "--out", str(out), "--steps", str(steps), "--batch-size", "4"], False, pin))
    seconds = max(json.loads((out / f"result-{r}.json").read_text())["train_seconds"] for r in range(processes))
    return 4 * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--pin", default=None, help="taskset CPU list for every process, e.g. 1")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        requests = write_requests(tmp, args.requests, args.steps)
        for n in (1, 2):
            batch = batch_rate(n, requests, tmp / f"batch-{n}", args.requests, args.pin)
            train = train_rate(n, tmp / f"train-{n}", args.train_steps, args.pin)
            rows.append((n, batch, train))
        same = all((tmp / "batch-1" / f"r{i}.png").read_bytes() == (tmp / "batch-2" / f"r{i}.png").read_bytes()
                   for i in range(args.requests))
    print(f"\ncores: {args.pin or os.sched_getaffinity(0)}; batch images byte-identical 1 vs 2 processes: {same}\n")
    print("| processes | batch generation (requests/s) | speed-up | training (samples/s) | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, batch, train in rows:
        print(f"| {n} | {batch:.2f} | {batch / rows[0][1]:.2f}x | {train:.2f} | {train / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
