"""MUSIC test-time scaling: encoder calls and seconds per candidate, batched vs one by one.

N plans -> N candidates. The pipeline encodes what does not depend on the plan once and sends
the candidates through the sampler together; this prints what that saves against running the
candidates one after the other (``candidate_batch_size=1``) and against N separate requests.
Run: ``python benchmarks/music_test_time_scaling.py [--candidates 4] [--steps 4] [--size 128]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from smg_plugins.music.heuristic import HeuristicPlanner
    from smg_plugins.music.layout_rule import LayoutAttentionRule
    from smg_sdk.demo import synthetic_subject
    from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
    from smg_sdk.pipeline import SubjectPipeline
    from smg_sdk.presets.tiny import tiny_flux_path
    from smg_sdk.backends.flux import FluxBackend

    class Counting:
        """Wraps a real encoder and counts its calls."""

        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def encode(self, request, backend):
            self.calls += 1
            return self.inner.encode(request, backend)

    torch.set_num_threads(2)
    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=64)
    subjects = [synthetic_subject(i, args.size) for i in range(3)]
    prompt = "<1> left of <2>, <3> above them"
    n = args.candidates
    print(f"tiny FLUX, {args.size}px, {args.steps} steps, 3 subjects, {n} candidates, median of {args.repeats}")
    print(f"{'CoT in prompt':>13} {'how':>22} {'encoder calls':>13} {'s / candidate':>13}")
    for cot in (False, True):
        for how, batch, separate in (("batched (default)", None, False), ("one by one", 1, False),
                                     (f"{n} separate requests", None, True)):
            times, calls = [], 0
            for _ in range(args.repeats):
                encoders = [Counting(FluxTextEncoder()), Counting(VAEReferenceEncoder())]
                pipe = SubjectPipeline(backend, encoders, rules=[LayoutAttentionRule()],
                                       planner=HeuristicPlanner(cot_in_prompt=cot))
                pipe.set_progress_bar_config(disable=True)
                kwargs = dict(height=args.size, width=args.size, num_inference_steps=args.steps, output_type="np")
                start = time.perf_counter()
                if separate:
                    for i in range(n):
                        pipe(prompt, subjects, seed=i, num_candidates=1, **kwargs)
                else:
                    pipe(prompt, subjects, seed=0, num_candidates=n, candidate_batch_size=batch, **kwargs)
                times.append((time.perf_counter() - start) / n)
                calls = sum(e.calls for e in encoders)
            print(f"{str(cot):>13} {how:>22} {calls:>13} {statistics.median(times):>13.4f}")


if __name__ == "__main__":
    main()
