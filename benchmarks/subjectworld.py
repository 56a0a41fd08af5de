"""Several presets side by side on held-out SubjectWorld requests (the `smg eval subjectworld` table).

    python benchmarks/subjectworld.py [--samples 16] [--subjects 1,2,3,4] [--rows ground-truth copy-paste tiny tiny:text-only]

A row is a preset or baseline name; ``NAME:text-only`` drops the references. Prints each metric's
mean and 95 % interval per subject count, one block per metric so rows line up.
"""

from __future__ import annotations

import argparse

from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate
from smg_sdk.eval.world_metrics import LOWER_IS_BETTER, METRICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--subjects", default="1,2,3,4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="+", default=["ground-truth", "copy-paste", "tiny", "tiny:text-only"])
    args = parser.parse_args()
    counts = tuple(int(k) for k in args.subjects.split(","))
    results = {}
    for row in args.rows:
        preset, _, flag = row.partition(":")
        config = WorldEvalConfig(preset, counts, args.samples, args.seed, no_references=flag == "text-only")
        results[row] = evaluate(config)
    width = max(len(r) for r in args.rows)
    for metric in METRICS:
        print(f"\n{metric}{' (lower is better)' if metric in LOWER_IS_BETTER else ''}, {args.samples} samples per k")
        print(" " * width + "".join(f"  k={k:<14d}" for k in counts))
        for row, result in results.items():
            cells = [result.payload["results"][str(k)][metric] for k in counts]
            print(row.ljust(width) + "".join(f"  {c['mean']:.3f} [{c['ci95'][0]:.2f},{c['ci95'][1]:.2f}]" for c in cells))


if __name__ == "__main__":
    main()
