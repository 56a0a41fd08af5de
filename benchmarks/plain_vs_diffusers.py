"""The plain backend (no references, no rules) against diffusers' FluxPipeline: time ratio and max |diff|, in one run.

Both run the same modules: diffusers' ``FluxPipeline`` with the tiny preset's VAE and text
encoders around a seeded random transformer of the benchmark config (2 double + 4 single
blocks, 8 heads x 64, as ``compact_references.py`` builds it), and the SDK's
``SubjectPipeline`` over ``FluxBackend.from_pipeline`` of that pipeline (T5 cut at 32 tokens,
``max_sequence_length=32`` given to diffusers too). Same prompt, seed, size and steps; the two
are timed alternately (so load drifts hit both), medians of ``--repeats`` after a warm-up of
each, wall and CPU seconds (``time.process_time``). The images are compared as float arrays
(``output_type="np"``). The SDK's encoding cache is off (diffusers re-encodes the prompt on every call). Issue 17's target: SDK <= 1.02x diffusers, identical output.

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/plain_vs_diffusers.py [--steps 8] [--size 256] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def timed(fn) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of ``fn()`` and its images."""
    start, start_cpu = time.perf_counter(), time.process_time()
    images = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, images


def main() -> None:
    from compact_references import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    add_model_arguments(parser)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from compact_references import build_pipeline

    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.backends.flux.encoders import FluxTextEncoder
    from smg_sdk.pipeline import SubjectPipeline

    diffusers_pipe = build_pipeline(args)
    diffusers_pipe.set_progress_bar_config(disable=True)
    sdk = SubjectPipeline(FluxBackend.from_pipeline(diffusers_pipe, max_sequence_length=32), [FluxTextEncoder()],
                          encoding_cache=False)  # diffusers re-encodes the prompt every call; so does the SDK here
    sdk.set_progress_bar_config(disable=True)
    common = dict(height=args.size, width=args.size, num_inference_steps=args.steps, output_type="np")
    prompt = "a photo of a thing on a table"
    runs = {
        "diffusers FluxPipeline": lambda: diffusers_pipe(prompt, generator=torch.Generator().manual_seed(0),
                                                         max_sequence_length=32, **common).images,
        "SDK plain backend": lambda: sdk(prompt, generator=torch.Generator().manual_seed(0), **common).images,
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    images = {}
    for r in range(args.repeats + 1):
        for name, fn in runs.items():
            wall, cpu, images[name] = timed(fn)
            if r:  # the first round warms up
                times[name].append((wall, cpu))
    print(f"random FLUX ({args.layers} double + {args.single_layers} single blocks, {args.heads} x {args.head_dim} heads), "
          f"{args.size} px, {args.steps} steps, median of {args.repeats}, {torch.get_num_threads()} thread(s)")
    print("| pipeline | wall s | CPU s | time ratio (wall) | time ratio (CPU) | max abs diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = [statistics.median(t[i] for t in times["diffusers FluxPipeline"]) for i in (0, 1)]
    diff = float(np.abs(np.asarray(images["SDK plain backend"]) - np.asarray(images["diffusers FluxPipeline"])).max())
    for name in runs:
        wall, cpu = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
        shown = "-" if name.startswith("diffusers") else f"{diff:.2e}"
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall / base[0]:.3f}x | {cpu / base[1]:.3f}x | {shown} |")


if __name__ == "__main__":
    main()
