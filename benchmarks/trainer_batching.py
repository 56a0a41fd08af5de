"""Training-step time of the generic trainer: one transformer call per sample vs stacked samples, in one run.

    python benchmarks/trainer_batching.py [--batch-size 8] [--repeats 5] [--threads 1]

The recipe is ``smg train subjectworld --recipe reference-lora``'s: the tiny preset with a rank-16
stream LoRA on the reference tokens, SubjectWorld reference -> target pairs with 1 or 2
subjects at 128 px. Three ways to compute one step (loss + backward) are timed alternately:

- ``per-sample``: the mean of ``sample_loss`` over the batch (one encode + one transformer
  call per sample: the trainer before stacking);
- ``stacked``: ``batch_loss`` (samples of one structure share a transformer call);
- ``stacked + cached``: ``batch_loss`` with ``cache_encodings`` after the first epoch (the
  conditions and target latents of each pair are reused).

Prints median seconds per step and the ratios to ``per-sample``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from smg_sdk.backends.flux.recipes import _load_backend
    from smg_sdk.backends.flux.plugin import tiny_pipeline
    from smg_sdk.data.subjectworld import SubjectWorld
    from smg_sdk.presets.tiny import tiny_flux_path
    from smg_sdk.training.recipes import SubjectWorldSamples
    from smg_sdk.training.trainer import FlowMatchingTrainer, TrainerConfig, _seed, adapter_parameters

    backend = _load_backend(tiny_flux_path())
    backend.add_stream_adapter("bench", rank=16)
    pipe = tiny_pipeline(backend, adapter="bench")
    data = SubjectWorldSamples(SubjectWorld("train", "reference", 0, subjects=(1, 2)), args.batch_size * args.repeats)
    trainers = {}
    for cache in (False, True):
        config = TrainerConfig(tempfile.mkdtemp(), batch_size=args.batch_size, height=128, width=128,
                               guidance_scale=3.5, progress=False, cache_encodings=cache)
        trainers[cache] = FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "bench"), data, config)
    plain, cached = trainers[False], trainers[True]

    def per_sample(step: int) -> torch.Tensor:
        return torch.stack([plain.sample_loss(plain.sample_at(step, i),
                                              torch.Generator().manual_seed(_seed(0, step, i, 2)))
                            for i in range(args.batch_size)]).mean()

    for step in range(args.repeats):  # the first epoch fills the cache
        cached.batch_loss(step)
    times: dict[str, list[float]] = {"per-sample": [], "stacked": [], "stacked + cached": []}
    for step in range(args.repeats):
        for name, loss_of in (("per-sample", per_sample), ("stacked", plain.batch_loss),
                              ("stacked + cached", cached.batch_loss)):
            began = time.perf_counter()
            loss_of(step).backward()
            times[name].append(time.perf_counter() - began)
            backend.transformer.zero_grad(set_to_none=True)
    base = statistics.median(times["per-sample"])
    print(f"batch {args.batch_size}, 1-2 subjects, 128 px, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'step':<18} {'s/step':>7} {'speed-up':>9}")
    for name, values in times.items():
        print(f"{name:<18} {statistics.median(values):>7.3f} {base / statistics.median(values):>8.2f}x")


if __name__ == "__main__":
    main()
