"""Run every benchmark script and write one report, ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--timeout S] [--out FILE]

Each script in :data:`BENCHMARKS` runs in its own subprocess (same interpreter, same
environment, so ``taskset``/``OMP_NUM_THREADS`` given to this command apply to every script),
with its quick arguments under ``--quick``. The report records the machine (CPU model,
cores, torch and diffusers versions), the date, the git commit (and whether the tree had
changes), this command, and per script its command line, wall time and printed output (the
tables). A script that fails or times out is reported as such with the end of its error
output; the command then exits with status 1, after writing the report.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    """One script of ``benchmarks/``: its arguments for a full run and for ``--quick``."""

    script: str
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)


BENCHMARKS = [
    Benchmark("plain_vs_diffusers.py", [], ["--steps", "4", "--repeats", "3"]),
    Benchmark("attention_masks.py", [], ["--quick"]),
    Benchmark("reference_modes.py", [], ["--steps", "2", "--size", "128", "--repeats", "1"]),
    Benchmark("compact_references.py", [], ["--quick"]),
    Benchmark("transformer_efficiency.py", [], ["--repeats", "3"]),
    Benchmark("encoding_cache.py", [], ["--repeats", "1", "--references", "1,4", "--steps", "2"]),
    Benchmark("music_planner_cost.py", [], ["--candidates", "1,4", "--repeats", "1"]),
    Benchmark("music_candidates.py", [], ["--repeats", "1"]),
    Benchmark("peak_memory.py"),
    Benchmark("music_test_time_scaling.py", [], ["--candidates", "2", "--steps", "2", "--size", "64", "--repeats", "1"]),
    Benchmark("squeeze_components.py", [], ["--repeats", "2", "--steps", "2"]),
    Benchmark("trainer_batching.py", [], ["--batch-size", "4", "--repeats", "2"]),
    Benchmark("scaling.py", ["--pin", "1"], ["--pin", "1", "--requests", "4", "--steps", "2", "--train-steps", "4"]),
    Benchmark("subjectworld_oracle.py", [], ["--samples", "20"]),
    Benchmark("subjectworld.py", [],  # the full run rewrites SUBJECTWORLD.md; the quick one only prints
              ["--rows", "ground-truth", "copy-paste", "tiny", "tiny:text-only", "--samples", "4", "--subjects", "1,2"]),
    Benchmark("subjectworld_attributes.py"),
    Benchmark("subject_adapter_loss.py"),
    Benchmark("dreambench_eval.py", [], ["--presets", "tiny", "--prompts", "1"]),
]
"""Every benchmark the report runs, in order: add a script here (one place) to include it."""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def machine() -> list[str]:
    """The report's header lines: machine, software, date, commit."""
    import diffusers
    import torch

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    return [
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores ({allowed} available to this run), "
        f"{platform.system()} {platform.release()}",
        f"- software: Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads by default), diffusers {diffusers.__version__}",
        f"- OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- commit: {_git('rev-parse', 'HEAD')}{dirty}",
    ]


def run(bench: Benchmark, quick: bool, timeout: float) -> tuple[list[str], bool]:
    """Run one script; its section of the report and whether it succeeded."""
    cmd = [sys.executable, str(HERE / bench.script), *(bench.quick if quick else bench.full)]
    shown = shlex.join(["python", f"benchmarks/{bench.script}", *cmd[2:]])
    print(f"$ {shown}", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        ok, out, err = done.returncode == 0, done.stdout, done.stderr
        status = "ok" if ok else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired as exc:
        ok, status = False, f"timed out after {timeout:.0f} s"
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.perf_counter() - start
    print(f"  {status}, {seconds:.0f} s", flush=True)
    body = out.rstrip()
    if not any(line.startswith("|") for line in body.splitlines()):  # plain-text tables: keep their alignment
        body = f"```text\n{body}\n```"
    lines = [f"## {bench.script}", "", f"`{shown}`: {status}, {seconds:.0f} s", "", body]
    if not ok:
        tail = "\n".join(err.strip().splitlines()[-15:])
        lines += ["", "Error output (last lines):", "", "```", tail, "```"]
    return lines + [""], ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's quick arguments")
    parser.add_argument("--only", nargs="+", default=None, help="run only these scripts (file names)")
    parser.add_argument("--skip", nargs="+", default=[], help="leave these scripts out (file names)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    known = {b.script for b in BENCHMARKS}
    unknown = sorted((set(args.only or []) | set(args.skip)) - known)
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(known)}")
    chosen = [b for b in BENCHMARKS if (args.only is None or b.script in args.only) and b.script not in args.skip]
    command = shlex.join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    report = ["# Benchmark results", "", *machine(), f"- command: `{command}`", ""]
    failed = []
    for bench in chosen:
        section, ok = run(bench, args.quick, args.timeout)
        report += section
        if not ok:
            failed.append(bench.script)
    report.append(f"Failed: {', '.join(failed)}" if failed else "All benchmarks completed.")
    Path(args.out).write_text("\n".join(report) + "\n")
    print(f"wrote {args.out}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
