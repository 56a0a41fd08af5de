"""The encoding cache: a request repeating the last one's references, with and without the cache.

For each preset, one pipeline runs a request (``k`` SubjectWorld-style references), then a second
request with the same references and another seed; with the cache on (the default) the second
request skips the condition encoders (VAE / MLLM / Redux, and the text encoders when the prompt
repeats too). Printed: the encode stage's seconds (``PipelineOutput.timings["encode"]``) and the
whole request's seconds of the second request, cache off vs on, and their ratios, medians of
``--repeats`` pairs measured in this run (the first pair warms up). The outputs of the two
pipelines are compared too (they must be identical).

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/encoding_cache.py [--presets tiny,squeeze-tiny,aligngen-tiny]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image


def _subjects(k: int, size: int):
    from smg_sdk import Subject

    rng = np.random.default_rng(0)
    return [Subject(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)), "thing") for _ in range(k)]


def second_request(pipe, k: int, args, repeats: int) -> tuple[float, float, float, torch.Tensor]:
    """Medians of the second request's encode seconds, wall and CPU seconds, and its output latents.

    CPU seconds (``time.process_time``) are less disturbed than wall seconds by other processes on the core."""
    prompt = " ".join(f"<{i + 1}>" for i in range(k)) + " together"
    subjects = _subjects(k, args.size)
    encode, total, cpu = [], [], []
    for r in range(repeats + 1):
        if pipe.encoding_cache is not None:
            pipe.encoding_cache.clear()  # each pair starts cold, so the first request of the pair encodes
        options = dict(height=args.size, width=args.size, num_inference_steps=args.steps, output_type="latent")
        pipe(prompt, subjects, seed=2 * r, **options)
        start, start_cpu = time.perf_counter(), time.process_time()
        out = pipe(prompt, subjects, seed=2 * r + 1, **options)
        if r:  # the first pair warms up
            total.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            encode.append(out.timings["encode"])
    return statistics.median(encode), statistics.median(total), statistics.median(cpu), out.images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,squeeze-tiny,aligngen-tiny")
    parser.add_argument("--references", default="1,2,4")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from smg_sdk.cli import _quiet_loading
    from smg_sdk import EncodingCache
    from smg_sdk.pipeline import SubjectPipeline

    _quiet_loading()
    print(f"second request with the same references (another seed), {args.size} px, {args.steps} steps, "
          f"median of {args.repeats}, {torch.get_num_threads()} thread(s)")
    print("| preset | k | encode s, off | encode s, on | encode speed-up | request s, off | request s, on | "
          "request speed-up | request CPU s, off | on | CPU speed-up | outputs equal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for preset in args.presets.split(","):
        pipe = SubjectPipeline.from_preset(preset)
        pipe.set_progress_bar_config(disable=True)
        for k in (int(v) for v in args.references.split(",")):
            pipe.encoding_cache = None
            enc_off, tot_off, cpu_off, out_off = second_request(pipe, k, args, args.repeats)
            pipe.encoding_cache = EncodingCache()
            enc_on, tot_on, cpu_on, out_on = second_request(pipe, k, args, args.repeats)
            print(f"| {preset} | {k} | {enc_off:.4f} | {enc_on:.4f} | {enc_off / enc_on:.1f}x | {tot_off:.3f} | "
                  f"{tot_on:.3f} | {tot_off / tot_on:.2f}x | {cpu_off:.3f} | {cpu_on:.3f} | {cpu_off / cpu_on:.2f}x | "
                  f"{torch.equal(out_off, out_on)} |", flush=True)


if __name__ == "__main__":
    main()
