"""What each Squeeze-MLLM component costs per request on the tiny preset (ms, median of runs).

Run: ``python benchmarks/squeeze_components.py [--repeats 5] [--steps 4]``. One request with
two subjects at 64x64; each component is timed on its own inside the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    runs, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    from smg_sdk import Subject, SubjectPipeline

    torch.set_num_threads(2)
    pipe = SubjectPipeline.from_preset("squeeze-tiny")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    subjects = [Subject(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), w) for w in ("dog", "bag")]
    request = pipe.make_request("a photo of <1> next to <2> on the beach", subjects, num_inference_steps=args.steps)
    pooled_enc, mllm_enc, vae_enc = pipe.encoders
    dla = pipe.aggregators[0]
    rows = []
    with torch.no_grad():
        ms, _ = timed(lambda: pooled_enc.encode(request, pipe.backend), args.repeats)
        rows.append(("CLIP pooled (flux-text, t5=False)", ms))
        ms, raw = timed(lambda: mllm_enc.encode(request, pipe.backend), args.repeats)
        rows.append((f"MLLM joint encode ({len(mllm_enc.layers)} layers kept)", ms))
        ms, _ = timed(lambda: dla.aggregate(raw, request), args.repeats)
        rows.append(("DLA aggregate", ms))
        ms, _ = timed(lambda: vae_enc.encode(request, pipe.backend), args.repeats)
        rows.append(("VAE identity encode (2 refs)", ms))
        conditions = pipe.encode(request)
        ms, result = timed(lambda: pipe.backend.denoise(conditions, height=64, width=64, num_inference_steps=args.steps,
                                                        schedule=pipe.schedule, progress=False), args.repeats)
        rows.append((f"denoise ({args.steps} steps, multistage, cached refs)", ms))
        ms, _ = timed(lambda: pipe.backend.decode(result.latents, 64, 64), args.repeats)
        rows.append(("VAE decode", ms))
        ms, _ = timed(lambda: pipe(request.prompt, subjects, seed=0, num_inference_steps=args.steps), args.repeats)
        rows.append(("whole request", ms))
    width = max(len(name) for name, _ in rows)
    print(f"{'component'.ljust(width)}  ms (median of {args.repeats})")
    for name, ms in rows:
        print(f"{name.ljust(width)}  {ms:8.1f}")


if __name__ == "__main__":
    main()
