"""Peak resident memory of ``smg demo`` and of one 4-reference request on the tiny preset, each a real subprocess.

Each row is a fresh Python process started by this script; its peak RSS is the ``ru_maxrss``
that ``os.wait4`` reports for exactly that child (Linux: KiB), so rows do not see each other.
Rows: the interpreter with ``torch`` and ``smg_sdk`` imported (the floor every row pays),
``python -m smg_sdk.cli demo`` into a temporary folder (what ``smg demo`` runs), and one request
with 4 references (synthetic subjects) on ``SubjectPipeline.from_preset("tiny")`` at ``--size``
px in concat mode (the preset's default) and in cached mode. Nothing is written inside the
repository. Linux only (``os.wait4``).

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/peak_memory.py [--size 128] [--steps 4]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORTS = "import torch, smg_sdk"
REQUEST = """
import torch
from smg_sdk import SubjectPipeline
from smg_sdk.cli import _quiet_loading
from smg_sdk.demo import synthetic_subject
_quiet_loading()
torch.set_num_threads(1)
pipe = SubjectPipeline.from_preset("tiny", reference_mode={mode!r})
pipe.set_progress_bar_config(disable=True)
subjects = [synthetic_subject(i, {size}) for i in range(4)]
out = pipe("<1> <2> <3> <4> together", subjects, height={size}, width={size}, num_inference_steps={steps}, seed=0)
assert len(out.images) == 1
"""


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of ``cmd`` run to completion; exits with its error output if it fails."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on a full pipe
        start = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        child.returncode = code  # reaped by wait4: tell Popen, so it does not wait again
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed (exit {code}):\n{err.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("python + import torch, smg_sdk", [sys.executable, "-c", IMPORTS]),
            ("smg demo", [sys.executable, "-m", "smg_sdk.cli", "demo", "--out", str(Path(tmp) / "demo"), "--quiet"]),
        ]
        for mode in ("concat", "cached"):
            code = REQUEST.format(mode=mode, size=args.size, steps=args.steps)
            rows.append((f"tiny, 4 references, {mode}, {args.size} px, {args.steps} steps", [sys.executable, "-c", code]))
        print("Peak RSS of each command in a fresh process (ru_maxrss from os.wait4), one run each")
        print("| command | peak RSS MiB | over the import floor MiB | wall s |")
        print("| --- | --- | --- | --- |")
        floor = None
        for name, cmd in rows:
            mib, seconds = peak_rss(cmd)
            floor = mib if floor is None else floor
            print(f"| {name} | {mib:.0f} | {mib - floor:.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
