"""Concat vs cached reference streams: seconds per request and the ratio, in one run.

OminiControl2 reports 5.9x on multi-condition generation from feature reuse; this script
measures what the SDK's cached mode buys on a CPU-sized random FLUX at several reference
counts. Run: ``python benchmarks/reference_modes.py [--steps 8] [--size 256] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image


def build_backend(layers: int, single_layers: int):
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.presets.tiny import tiny_flux_path

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_path()), local_files_only=True)
    torch.manual_seed(0)
    pipe.transformer = FluxTransformer2DModel(  # the tiny VAE's packed latent width, so its references fit
        in_channels=pipe.transformer.config.in_channels, num_layers=layers, num_single_layers=single_layers, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(8, 12, 12),
    )
    return FluxBackend.from_pipeline(pipe, max_sequence_length=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--single-layers", type=int, default=4)
    args = parser.parse_args()

    from smg_sdk import Subject
    from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
    from smg_sdk.pipeline import SubjectPipeline

    torch.set_num_threads(2)
    backend = build_backend(args.layers, args.single_layers)
    rng = np.random.default_rng(0)
    subjects = [Subject(Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)), "thing")
                for _ in range(3)]
    print(f"random FLUX: {args.layers} double + {args.single_layers} single blocks, {args.size}px, "
          f"{args.steps} steps, median of {args.repeats}")
    print(f"{'refs':>4} {'concat s':>9} {'cached s':>9} {'concat/cached':>14}")
    for n in (1, 2, 3):
        prompt = " ".join(f"<{k + 1}>" for k in range(n)) + " together"
        times = {}
        for mode in ("concat", "cached"):
            pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode=mode)])
            pipe.set_progress_bar_config(disable=True)
            runs = []
            for _ in range(args.repeats + 1):  # first run warms up
                start = time.perf_counter()
                pipe(prompt, subjects[:n], height=args.size, width=args.size, num_inference_steps=args.steps,
                     seed=0, output_type="latent")
                runs.append(time.perf_counter() - start)
            times[mode] = statistics.median(runs[1:])
        print(f"{n:>4} {times['concat']:>9.3f} {times['cached']:>9.3f} {times['concat'] / times['cached']:>14.2f}")


if __name__ == "__main__":
    main()
