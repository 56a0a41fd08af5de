"""Test-time scaling on ``music-tiny``: N candidates in one request vs N sequential requests, planning included, in one run.

One request with ``num_candidates=N`` plans N layouts with the MUSIC planner (one batched
``generate`` per round), encodes what does not depend on the plan once, denoises the candidates
together, and ranks them with the verifier. The baseline is what a caller without test-time
scaling would do: N requests of one candidate each, one after the other (seeds 0..N-1). Both go
through the preset as shipped (``SubjectPipeline.from_preset("music-tiny")``: the tiny FLUX, the
tiny random Qwen2.5-VL planner, the layout rule, the CLIP verifier). The encoding cache is
cleared before each measured request (batched) and before each group of N sequential requests, so
the sequential requests after the first reuse encodings as a caller's would. The tiny planner
never writes a valid plan, so every plan is the worst case (all rounds fail, heuristic fallback).

Printed per N: wall and CPU seconds (``time.process_time``) of the batched request and of the N
sequential requests, the ratio (target of issue 17: N = 4 <= 0.8x), and the batched request's
stages (``PipelineOutput.timings``, wall seconds). Medians of ``--repeats`` after a warm-up.

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/music_candidates.py [--candidates 1,2,4,8] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

PROMPT = "<1> left of <2>, <3> above them"
STAGES = ("plan", "encode", "denoise", "decode", "verify")


def measure(pipe, subjects, n: int, batched: bool, args) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of one batched request (or of n sequential ones), and the stage timings."""
    pipe.encoding_cache.clear()
    kwargs = dict(height=args.size, width=args.size, output_type="np")
    if args.steps:
        kwargs["num_inference_steps"] = args.steps
    start, start_cpu = time.perf_counter(), time.process_time()
    if batched:
        timings = dict(pipe(PROMPT, subjects, seed=0, num_candidates=n, **kwargs).timings)
    else:
        timings = {}
        for i in range(n):
            for key, value in pipe(PROMPT, subjects, seed=i, num_candidates=1, **kwargs).timings.items():
                timings[key] = timings.get(key, 0.0) + value
    return time.perf_counter() - start, time.process_time() - start_cpu, timings


def median_of(pipe, subjects, n: int, batched: bool, args) -> tuple[float, float, dict[str, float]]:
    """Medians over ``args.repeats`` runs of :func:`measure`."""
    runs = [measure(pipe, subjects, n, batched, args) for _ in range(args.repeats)]
    stages = {key: statistics.median(r[2].get(key, 0.0) for r in runs) for key in STAGES}
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from smg_sdk import SubjectPipeline
    from smg_sdk.cli import _quiet_loading
    from smg_sdk.demo import synthetic_subject

    _quiet_loading()
    pipe = SubjectPipeline.from_preset("music-tiny")
    pipe.set_progress_bar_config(disable=True)
    subjects = [synthetic_subject(i, args.size) for i in range(3)]
    measure(pipe, subjects, 1, True, args)  # loads the planner's MLLM and the verifier, warms up
    print(f"music-tiny (MUSIC planner, 3 subjects), {args.size} px, steps {args.steps or 'preset default'}, "
          f"median of {args.repeats}, {torch.get_num_threads()} thread(s)")
    print("| N | batched wall s | batched CPU s | N sequential wall s | N sequential CPU s | ratio (wall) | "
          "ratio (CPU) | batched plan s | encode s | denoise s | decode s | verify s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(v) for v in args.candidates.split(",")):
        wall, cpu, stages = median_of(pipe, subjects, n, True, args)
        seq_wall, seq_cpu, _ = median_of(pipe, subjects, n, False, args)
        cells = " | ".join(f"{stages[key]:.3f}" for key in STAGES)
        print(f"| {n} | {wall:.3f} | {cpu:.3f} | {seq_wall:.3f} | {seq_cpu:.3f} | {wall / seq_wall:.2f}x | "
              f"{cpu / seq_cpu:.2f}x | {cells} |", flush=True)


if __name__ == "__main__":
    main()
