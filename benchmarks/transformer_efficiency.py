"""Transformer step efficiency: GFLOP per CPU-second of one forward against a measured fp32 matmul peak, and where the time goes.

The model is the benchmark config of issue 17 (``compact_references.py``'s random FLUX: 2 double +
4 single blocks, 8 heads x 64, with the SDK's attention processors installed by
``FluxBackend.from_pipeline``) at ``--size`` px: 32 text tokens and ``(size / 16)^2`` image tokens,
plus, per ``--references`` value k, k more image-side tokens blocks of the target's size (the token
count of concat references; run here without a mask, every pair computed). FLOPs are counted from
the config and the token counts by ``benchmarks/flux_flops.py`` (24 D^2 per token per block for the
linear layers, 4 D per (query, key) pair per block for attention, plus the embedders).

Peak: ``torch.mm`` in fp32 on the forward's own GEMM shapes (tokens x D by D x 3D, D x 4D, 4D x D,
5D x D) and on a 1024^3 product, with this process's threads (run it with 1); the best GFLOP per
CPU-second of them is the peak. Efficiency = the forward's GFLOP per CPU-second / peak. Issue 17's
target: >= 0.75 (0.65 before), or the report says where the rest goes: per token count, a table of
``torch.profiler``'s top operators by self CPU time of one forward, and one that groups all
operators into matmul, attention kernels, and the rest (norms, RoPE, GELU, elementwise, copies).
CPU seconds are ``time.process_time``; medians of ``--repeats`` after a warm-up.

Run: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/transformer_efficiency.py [--references 0,4] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
ATTENTION = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
             "aten::_scaled_dot_product_attention_math", "aten::_softmax", "aten::softmax")


def cpu_seconds(fn, repeats: int) -> float:
    """Median CPU seconds of ``fn()`` after one warm-up call."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        runs.append(time.process_time() - start)
    return statistics.median(runs)


def matmul_peak(tokens: int, d: int, repeats: int) -> list[tuple[str, float]]:
    """GFLOP per CPU-second of fp32 ``torch.mm`` at the forward's GEMM shapes and at 1024^3."""
    shapes = [(tokens, d, 3 * d), (tokens, d, 4 * d), (tokens, 4 * d, d), (tokens, 5 * d, d), (1024, 1024, 1024)]
    rows = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        rows.append((f"{m} x {k} @ {k} x {n}", 2 * m * k * n / cpu_seconds(lambda: torch.mm(a, b), repeats) / 1e9))
    return rows


def forward_inputs(transformer, text: int, image: int) -> dict:
    """Random inputs of one transformer evaluation with ``text`` + ``image`` tokens (batch 1)."""
    config = transformer.config
    side = int(image ** 0.5)
    position = torch.arange(image)
    ids = torch.stack([torch.zeros(image), (position // side).float(), (position % side).float()], -1)  # a grid, row by row
    generator = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, image, config.in_channels, generator=generator),
        encoder_hidden_states=torch.randn(1, text, config.joint_attention_dim, generator=generator),
        pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
        timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]), txt_ids=torch.zeros(text, 3),
        img_ids=ids, return_dict=False,
    )


def breakdown(transformer, inputs: dict, top: int, attention_flops: float, total_flops: float) -> None:
    """Print the top operators by self CPU time of one forward, and the time grouped by kind with its GFLOP rate.

    ``attention_flops`` are the forward's attention FLOPs, ``total_flops`` all of them (the rest are the matmuls')."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        transformer(**inputs)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print("\n| operator | calls | self CPU ms | share |")
    print("| --- | --- | --- | --- |")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e3:.2f} | {e.self_cpu_time_total / total:.1%} |")
    groups = {"matmul (mm/addmm/bmm/linear)": 0.0, "attention kernels (SDPA, softmax)": 0.0, "everything else": 0.0}
    counted = {"matmul (mm/addmm/bmm/linear)": total_flops - attention_flops,
               "attention kernels (SDPA, softmax)": attention_flops, "everything else": 0.0}
    for e in events:
        key = ("matmul (mm/addmm/bmm/linear)" if e.key in MATMUL
               else "attention kernels (SDPA, softmax)" if e.key in ATTENTION else "everything else")
        groups[key] += e.self_cpu_time_total
    print("\n| kind | self CPU ms | share | counted GFLOP | GFLOP per CPU-second |")
    print("| --- | --- | --- | --- | --- |")
    for key, us in groups.items():
        rate = f"{counted[key] / us / 1e3:.1f}" if counted[key] else "-"
        print(f"| {key} | {us / 1e3:.2f} | {us / total:.1%} | {counted[key] / 1e9:.2f} | {rate} |")


def main() -> None:
    from compact_references import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--references", default="0,4", help="extra target-sized image-side token blocks")
    parser.add_argument("--repeats", type=int, default=5)
    add_model_arguments(parser)
    parser.add_argument("--top", type=int, default=12, help="operators in each profile table")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from compact_references import build_backend
    from flux_flops import forward_flops, layers, width

    from smg_sdk.cli import _quiet_loading

    _quiet_loading()
    transformer = build_backend(args).transformer.eval()
    d, text, target = width(transformer.config), 32, (args.size // 16) ** 2
    print(f"random FLUX ({args.layers} double + {args.single_layers} single blocks, {args.heads} x {args.head_dim} heads), "
          f"{args.size} px, fp32, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    for k in (int(v) for v in args.references.split(",")):
        image = target * (1 + k)
        inputs = forward_inputs(transformer, text, image)
        flops = forward_flops(transformer.config, text, image, (text + image) ** 2)
        with torch.no_grad():
            seconds = cpu_seconds(lambda: transformer(**inputs), args.repeats)
        peaks = matmul_peak(text + image, d, args.repeats)
        peak = max(g for _, g in peaks)
        print(f"\n### {text} text + {image} image-side tokens (k = {k})")
        print("| measure | GFLOP | CPU s | GFLOP per CPU-second | of peak |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| transformer forward | {flops / 1e9:.2f} | {seconds:.4f} | {flops / seconds / 1e9:.1f} | "
              f"{flops / seconds / 1e9 / peak:.2f} |")
        for name, gflops in peaks:
            print(f"| torch.mm {name} | | | {gflops:.1f} | {gflops / peak:.2f} |")
        print(f"\nWhere this forward's time goes (torch.profiler; its timing adds some overhead):")
        breakdown(transformer, inputs, args.top, layers(transformer.config) * 4 * d * (text + image) ** 2, flops)


if __name__ == "__main__":
    main()
