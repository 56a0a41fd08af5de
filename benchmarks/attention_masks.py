"""Attention-pass preparation and one attention call: dense additive mask vs block plan, in one run.

Pass preparation is everything before the first denoising step that depends on the rules: the
layout, stream independence, the rules (``IsolateReferencesRule``), and the attention input
(dense: ``JointAttentionMask`` in dense mode and its ``(B, 1, Q, K)`` ``additive()`` mask;
block: the structured mask and its ``plan()``). "hide step" is a schedule step that hides
one reference (weight 0): the dense path copies the mask and rebuilds the additive tensor,
the block path compiles a plan for those weights once. Token counts are FLUX.1-dev's: 512
text tokens, (px / 16)^2 image tokens, k concat references at the target's size, batch 1.

Memory: each (path, px, k) row runs in a fresh Python process, which reports its peak RSS
(``resource.getrusage(...).ru_maxrss``) minus its RSS just before preparation
(``/proc/self/statm``): torch's CPU allocations are invisible to tracemalloc, and RSS counts
them. Time: ``time.perf_counter`` around preparation, one run (preparation is deterministic
work, minutes at the dense 1024 px sizes before this change).

The attention call: random q/k/v (``--heads`` x ``--head-dim``) at ``--step-px`` with
``--step-refs`` concat references, the dense mask through diffusers' ``dispatch_attention_fn``
(the processor's former path) vs ``attend_blocks`` (the processor's path now); median of
``--repeats`` after a warm-up, and the largest output difference.

The transformer evaluation: a random FLUX (2 double + 4 single blocks, 8 heads x 64) at
``--model-px`` with ``--model-refs`` concat references and ``IsolateReferencesRule``, run
through the SDK's processor with the dense plan (the ``(1, 1, Q, K)`` mask) vs the block
plan; median of ``--repeats`` after a warm-up.

Run: ``python benchmarks/attention_masks.py [--quick]`` (``--quick``: 512 px only, a 256 px
attention call, k = 2 in the transformer evaluation, fewer repeats). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TEXT_TOKENS = 512


def _conditions(px: int, refs: int, batch: int = 1):
    import torch

    from smg_sdk.backends.flux.positions import grid_ids, text_ids
    from smg_sdk.conditions import ConditionSet, ConditionStream

    side = px // 16
    streams = [ConditionStream("prompt", torch.zeros(batch, TEXT_TOKENS, 8), text_ids(TEXT_TOKENS), "text")]
    for i in range(refs):
        ids = grid_ids(side, side, col_offset=-side * (i + 1))
        streams.append(ConditionStream(f"ref{i}", torch.zeros(batch, side * side, 8), ids, "reference", mode="concat"))
    return ConditionSet(streams), side * side


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _prepare(path: str, conditions, image_tokens: int):
    """The pass's attention input, and a function giving a hide-one-reference step's input."""
    from smg_sdk.attention import IsolateReferencesRule, JointAttentionMask, JointLayout
    from smg_sdk.attention.masks import isolate_independent_streams
    from smg_sdk.attention.passes import build_attention_pass

    rules = [IsolateReferencesRule()]
    if path == "block":
        attention = build_attention_pass(conditions, image_tokens, rules)
        return attention.plan_at({}), lambda w: attention.plan_at(w)
    mask = JointAttentionMask(JointLayout.build(conditions, image_tokens), 1)
    _ = mask.allowed  # dense mode: the rules edit (1, Q, K) tensors, as before the block path
    isolate_independent_streams(mask, conditions)
    for rule in rules:
        rule.apply(mask, conditions, None)

    def step(weights):
        other = mask.copy()
        other.apply_stream_weights(weights)
        return other.additive()

    return mask.additive(), step


def worker(path: str, px: int, refs: int) -> dict:
    """One row, measured in this (fresh) process."""
    conditions, image_tokens = _conditions(px, refs)
    before = _rss_mb()
    start = time.perf_counter()
    first, step = _prepare(path, conditions, image_tokens)
    prep = time.perf_counter() - start
    peak = _peak_mb() - before
    start = time.perf_counter()
    hidden = step({"ref0": 0.0}) if refs else first
    hide = time.perf_counter() - start
    calls = len(first.blocks) if path == "block" else 1
    hidden_calls = len(hidden.blocks) if path == "block" else 1
    return dict(prep=prep, peak=peak, hide=hide, calls=calls,
                hidden_calls=hidden_calls, tokens=TEXT_TOKENS + image_tokens * (1 + refs))


def _run_worker(path: str, px: int, refs: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", path, str(px), str(refs)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def prep_table(sizes: list[int], counts: list[int]) -> None:
    print("| px | k | Q = K | dense prep s | dense peak MB | block prep s | block peak MB | "
          "dense hide-step s | block hide-step s | block calls (hide step) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for px in sizes:
        for k in counts:
            dense, block = _run_worker("dense", px, k), _run_worker("block", px, k)
            if "error" in dense or "error" in block:
                print(f"| {px} | {k} | | {dense.get('error', '')} | | {block.get('error', '')} | | | | |", flush=True)
                continue
            print(f"| {px} | {k} | {block['tokens']} | {dense['prep']:.3f} | {dense['peak']:.0f} | "
                  f"{block['prep']:.4f} | {block['peak']:.1f} | {dense['hide']:.3f} | {block['hide']:.4f} | "
                  f"{block['calls']} ({block['hidden_calls']}) |", flush=True)


def step_table(px: int, refs: int, heads: int, head_dim: int, repeats: int) -> None:
    import torch
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    from smg_sdk.backends.flux.processor import attend_blocks

    conditions, image_tokens = _conditions(px, refs)
    additive, _ = _prepare("dense", conditions, image_tokens)
    plan, _ = _prepare("block", conditions, image_tokens)
    n = plan.num_queries
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, n, heads, head_dim, generator=gen) for _ in range(3))
    runs = {
        "dense": lambda: dispatch_attention_fn(q, k, v, attn_mask=additive),
        "block": lambda: attend_blocks(plan, q, k, v),
        "unmasked (no rules)": lambda: dispatch_attention_fn(q, k, v),
    }
    times, diff = _timed(runs, repeats)
    _print_times(f"One attention call: {px} px, k = {refs} concat references (Q = K = {n}), {heads} heads x "
                 f"{head_dim}, {torch.get_num_threads()} thread(s), median of {repeats}; block plan: {plan.describe()}",
                 {name: (name, t) for name, t in times.items()}, diff)


def _timed(runs: dict, repeats: int) -> tuple[dict[str, float], float]:
    """Median seconds of each function after a warm-up call, and max |block - dense| of their outputs."""
    times, outs = {}, {}
    for name, fn in runs.items():
        outs[name] = fn()  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    return times, float((outs["block"] - outs["dense"]).abs().max())


def _print_times(title: str, rows: dict[str, tuple[str, float]], diff: float) -> None:
    """A Markdown table of ``{name: (label, seconds)}`` with each row's ratio to ``"dense"``."""
    print(f"\n{title}\n")
    print("| path | seconds | vs dense |")
    print("|---|---:|---:|")
    for label, t in rows.values():
        print(f"| {label} | {t:.4f} | {t / rows['dense'][1]:.2f}x |")
    print(f"\nmax |block - dense| = {diff:.2e}")


def model_table(px: int, refs: int, repeats: int) -> None:
    """One transformer evaluation of a random FLUX (2 double + 4 single blocks, 8 heads x 64) with
    ``refs`` concat references and ``IsolateReferencesRule``: the processor with the dense plan vs the block plan."""
    import torch
    from diffusers import FluxTransformer2DModel

    from smg_sdk.attention import IsolateReferencesRule
    from smg_sdk.attention.passes import build_attention_pass
    from smg_sdk.backends.flux.positions import grid_ids
    from smg_sdk.backends.flux.processor import AttentionContext, install_stream_processors

    torch.manual_seed(0)
    model = FluxTransformer2DModel(in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=64,
                                   num_attention_heads=8, joint_attention_dim=32, pooled_projection_dim=32,
                                   guidance_embeds=True, axes_dims_rope=(16, 24, 24)).eval()
    install_stream_processors(model)
    conditions, image_tokens = _conditions(px, refs)
    attention = build_attention_pass(conditions, image_tokens, [IsolateReferencesRule()])
    dense_mask = attention.mask.copy()
    _ = dense_mask.allowed  # dense mode: its plan is one call with the (1, 1, Q, K) additive mask
    plans = {"dense": dense_mask.plan(), "block": attention.plan_at({})}
    side = px // 16
    ids = torch.cat([grid_ids(side, side)] + [s.position_ids for s in conditions.references])
    inputs = dict(
        hidden_states=torch.randn(1, ids.shape[0], 16), encoder_hidden_states=torch.randn(1, TEXT_TOKENS, 32),
        pooled_projections=torch.randn(1, 32), timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
        txt_ids=torch.zeros(TEXT_TOKENS, 3), img_ids=ids, return_dict=False,
    )
    runs = {name: (lambda plan=plan: model(**inputs, joint_attention_kwargs={"smg": AttentionContext(plan=plan)})[0])
            for name, plan in plans.items()}
    with torch.no_grad():
        times, diff = _timed(runs, repeats)
    _print_times(f"One transformer evaluation, random FLUX (2 double + 4 single blocks, 8 heads x 64): {px} px, "
                 f"k = {refs} concat references, IsolateReferencesRule (Q = K = {plans['block'].num_queries}), "
                 f"median of {repeats}", {name: (f"{name}: {plans[name].describe()}", t) for name, t in times.items()},
                 diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 px only; a 256 px attention call")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--step-px", type=int, default=512)
    parser.add_argument("--step-refs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-px", type=int, default=256)
    parser.add_argument("--model-refs", type=int, default=4)
    parser.add_argument("--worker", nargs=3, metavar=("PATH", "PX", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        path, px, k = args.worker
        print(json.dumps(worker(path, int(px), int(k))))
        return
    import torch

    torch.set_num_threads(1)
    sizes = [512] if args.quick else [512, 1024]
    print(f"Attention-pass preparation, text {TEXT_TOKENS} tokens + image + k concat references (batch 1); "
          "peak = peak RSS above the RSS before preparation, fresh process per row\n")
    prep_table(sizes, [1, 2, 4])
    step_px = 256 if args.quick else args.step_px
    step_table(step_px, args.step_refs, args.heads, args.head_dim, 3 if args.quick else args.repeats)
    model_table(args.model_px, 2 if args.quick else args.model_refs, 2 if args.quick else args.repeats)


if __name__ == "__main__":
    main()
