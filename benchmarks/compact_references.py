"""Compact references (``reference_scale``): tokens saved, speed, and quality on SubjectWorld, in one run.

**Speed**: seconds per request for concat, cached, and cached + compact (1/2, 1/4) references at
k = 0, 1, 2, 4 on the benchmark config of issue 17 (the tiny preset's VAE and text encoders around a
random FLUX transformer: 2 double + 4 single blocks, 8 heads x 64, 256 px, 8 steps, the shape the
issue reports ``reference_modes.py``'s numbers on), medians of ``--repeats`` after a warm-up, and the
speed-up over concat measured in this run, with the *ideal* speed-up from transformer FLOPs counted from the config and
each request's token counts and attention plan (``benchmarks/flux_flops.py``: 24 D^2 per query token per
block for the linear layers, 4 D per computed (query, key) pair per block for attention, plus the
embedders; steps x one evaluation, plus one recording pass per cached reference), and the measured
CPU speed-up as a share of it.
**Quality**: the shipped ``tiny`` preset at reference scale 1, 1/2, 1/4 on held-out SubjectWorld
requests, scored by the oracle as ``smg eval subjectworld`` does (:func:`smg_sdk.eval.world_eval.evaluate`):
identity (all attributes read back), similarity (share of attributes read back: graded, so it moves while
identity is at 0 for the shipped preset), copy_paste (lower is better), instruction, mean and 95 % bootstrap interval.

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/compact_references.py [--quick]``
(``--quick``: 4 samples per subject count, 2 repeats; ``--only speed|quality``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

SCALES = (1.0, 0.5, 0.25)
SPEED_CONFIGS = (("concat", 1.0), ("cached", 1.0), ("cached", 0.5), ("cached", 0.25))
QUALITY_METRICS = ("identity", "similarity", "copy_paste", "instruction")


def _label(mode: str, scale: float) -> str:
    return mode if scale == 1 else f"{mode}+1/{round(1 / scale)}"


def seconds_per_request(backend, mode: str, scale: float, subjects, args) -> tuple[float, float, int, float]:
    """Median wall and CPU seconds of one request with ``len(subjects)`` references, its reference tokens and FLOPs.

    CPU seconds (``time.process_time``) are less disturbed than wall seconds by other processes on the core.
    FLOPs: the transformer's, counted by :func:`request_flops`."""
    from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
    from smg_sdk.pipeline import SubjectPipeline

    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode=mode, reference_scale=scale)])
    pipe.set_progress_bar_config(disable=True)
    prompt = " ".join(f"<{k + 1}>" for k in range(len(subjects))) + " together" if subjects else "a thing"
    request = pipe.make_request(prompt, subjects, height=args.size, width=args.size)
    conditions = pipe.encode(request)
    tokens = sum(s.tokens.shape[1] for s in conditions.streams if s.side == "reference")
    flops = request_flops(backend, pipe, request, conditions, args)
    wall, cpu = [], []
    for _ in range(args.repeats + 1):  # the first run warms up
        start, start_cpu = time.perf_counter(), time.process_time()
        pipe(prompt, subjects, height=args.size, width=args.size, num_inference_steps=args.steps, seed=0,
             output_type="latent")
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall[1:]), statistics.median(cpu[1:]), tokens, flops


def request_flops(backend, pipe, request, conditions, args) -> float:
    """Transformer FLOPs of one request: ``steps`` denoising evaluations plus one recording pass per cached reference.

    A denoising evaluation has the text tokens and the image side (target plus concat references) as
    queries and the attention pairs of the pass's plan (cached references' keys included); a cached
    reference is recorded once (timestep 0) alone: its tokens as queries and keys. Counted by
    ``flux_flops`` (see its docstring for what is counted)."""
    from flux_flops import attention_pairs, forward_flops

    from smg_sdk.attention.passes import build_attention_pass

    image = (args.size // 16) ** 2
    attention = build_attention_pass(conditions, image, pipe.rules, request)
    plan = attention.plan_at({})
    text = sum(int(s.tokens.shape[1]) for s in conditions.text)
    config = backend.transformer.config
    step = forward_flops(config, text, plan.num_queries - text, attention_pairs(plan, plan.num_queries, plan.num_keys))
    record = sum(forward_flops(config, 0, int(s.tokens.shape[1]), int(s.tokens.shape[1]) ** 2)
                 for s in attention.cached_streams)
    return args.steps * step + record


def add_model_arguments(parser) -> None:
    """The benchmark config's shape options (``build_pipeline`` reads them): 2 double + 4 single blocks, 8 heads x 64."""
    parser.add_argument("--layers", type=int, default=2, help="double-stream blocks")
    parser.add_argument("--single-layers", type=int, default=4, help="single-stream blocks")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)


def build_pipeline(args):
    """diffusers' FluxPipeline: the tiny preset's VAE and text encoders around a seeded random transformer of the benchmark shape."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from smg_sdk.presets.tiny import tiny_flux_path

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_path()), local_files_only=True)
    tiny = pipe.transformer.config
    rope = args.head_dim // 4, 3 * args.head_dim // 8, 3 * args.head_dim // 8  # FLUX.1's 16/56/56 split, scaled
    torch.manual_seed(0)
    pipe.transformer = FluxTransformer2DModel(
        in_channels=tiny.in_channels, num_layers=args.layers, num_single_layers=args.single_layers,
        attention_head_dim=args.head_dim, num_attention_heads=args.heads, joint_attention_dim=tiny.joint_attention_dim,
        pooled_projection_dim=tiny.pooled_projection_dim, guidance_embeds=True, axes_dims_rope=rope,
    )
    return pipe


def build_backend(args):
    """The SDK backend over :func:`build_pipeline`'s modules (T5 cut at 32 tokens)."""
    from smg_sdk.backends.flux import FluxBackend

    return FluxBackend.from_pipeline(build_pipeline(args), max_sequence_length=32)


def speed(args) -> None:
    from smg_sdk import Subject

    backend = build_backend(args)
    rng = np.random.default_rng(0)
    subjects = [Subject(Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)), "thing")
                for _ in range(4)]
    print(f"\n## Speed: random FLUX ({args.layers} double + {args.single_layers} single blocks, "
          f"{args.heads} x {args.head_dim} heads), {args.size} px, {args.steps} steps, median of {args.repeats}, {torch.get_num_threads()} thread(s)")
    print("Ideal speed-up = transformer FLOPs of concat / FLOPs of the row (counted from the config and the "
          "pass's token counts and attention plan, see benchmarks/flux_flops.py); of ideal = CPU speed-up / ideal.")
    print("| k | config | reference tokens | tokens saved | GFLOP / request | wall s / request | CPU s / request | "
          "speed-up over concat (wall) | (CPU) | ideal | of ideal (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in (int(v) for v in args.references.split(",")):
        rows = [(mode, scale, *seconds_per_request(backend, mode, scale, subjects[:k], args))
                for mode, scale in SPEED_CONFIGS]
        base_wall, base_cpu, base_tokens, base_flops = rows[0][2:]
        for mode, scale, wall, cpu, tokens, flops in rows:
            saved = f"{1 - tokens / base_tokens:.0%}" if base_tokens else "-"
            ideal = base_flops / flops
            print(f"| {k} | {_label(mode, scale)} | {tokens} | {saved} | {flops / 1e9:.2f} | {wall:.3f} | "
                  f"{cpu:.3f} | {base_wall / wall:.2f}x | {base_cpu / cpu:.2f}x | {ideal:.2f}x | "
                  f"{base_cpu / cpu / ideal:.0%} |", flush=True)


def quality(args) -> None:
    from smg_sdk.cli import _quiet_loading
    from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate

    _quiet_loading()
    counts = tuple(int(k) for k in args.subjects.split(","))
    print(f"\n## Quality: tiny preset on held-out SubjectWorld, {args.samples} samples per subject count, "
          f"seed {args.seed}, oracle scores (mean [95 % CI]); copy_paste: lower is better")
    print("| mode | scale | k | " + " | ".join(QUALITY_METRICS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in QUALITY_METRICS) + " |")
    for mode in args.modes.split(","):
        for scale in SCALES:
            config = WorldEvalConfig("tiny", counts, args.samples, args.seed,
                                     options={"reference_mode": mode, "reference_scale": scale})
            start = time.perf_counter()
            results = evaluate(config, progress=False).payload["results"]
            seconds = time.perf_counter() - start
            for k, metrics in results.items():
                cells = [f"{metrics[m]['mean']:.3f} [{metrics[m]['ci95'][0]:.2f}, {metrics[m]['ci95'][1]:.2f}]"
                         for m in QUALITY_METRICS]
                print(f"| {mode} | 1/{round(1 / scale)} | {k} | " + " | ".join(cells) + " |", flush=True)
            print(f"<!-- {mode} 1/{round(1 / scale)}: {seconds:.1f} s for {args.samples * len(counts)} requests -->")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 samples per subject count, 2 repeats")
    parser.add_argument("--only", choices=("speed", "quality"), default=None)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    add_model_arguments(parser)
    parser.add_argument("--references", default="0,1,2,4", help="reference counts k for the speed table")
    parser.add_argument("--samples", type=int, default=16, help="SubjectWorld requests per subject count")
    parser.add_argument("--subjects", default="1,2", help="SubjectWorld subject counts")
    parser.add_argument("--modes", default="concat,cached", help="reference modes for the quality table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.repeats = 4, 2
    torch.set_num_threads(args.threads)
    if args.only in (None, "speed"):
        speed(args)
    if args.only in (None, "quality"):
        quality(args)


if __name__ == "__main__":
    main()
