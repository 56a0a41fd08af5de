"""The SubjectWorld renderer's speed and the oracle's accuracy, clean and under each degradation.

    python benchmarks/subjectworld_oracle.py [--samples 150]

Prints samples/s for reference samples (target + one reference per subject, 1-4 subjects, 128 px,
one core) and caption samples, then a table of per-attribute accuracy (subjects matched by centre)
on held-out targets and references. The test suite guards the same numbers at >= 98 % (clean) and
>= 90 % (each degradation) on a smaller fixed sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from smg_sdk.data.subjectworld import SubjectWorld  # noqa: E402
from smg_sdk.eval.degrade import DEGRADATIONS  # noqa: E402
from test_subjectworld_oracle import attribute_accuracy  # noqa: E402


def samples_per_second(kind: str, count: int = 3000) -> float:
    world = SubjectWorld("train", kind=kind, seed=99)
    world[0]  # warm the sprite caches' first entries like a long run would
    start = time.perf_counter()
    for i in range(count):
        world[i]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=150)
    args = parser.parse_args()
    print(f"renderer: {samples_per_second('reference'):.0f} reference samples/s, "
          f"{samples_per_second('caption'):.0f} caption samples/s (128 px, 1-4 subjects, one process)")
    rows = [("clean", attribute_accuracy(args.samples))]
    rows += [(name, attribute_accuracy(args.samples, fn)) for name, fn in DEGRADATIONS.items()]
    names = list(rows[0][1])
    print(f"\noracle per-attribute accuracy, {args.samples} held-out samples (targets + references)")
    print("degradation   " + "  ".join(f"{n:>14s}" for n in names) + "  " + f"{'min':>6s}")
    for label, acc in rows:
        print(f"{label:13s} " + "  ".join(f"{100 * acc[n]:13.1f}%" for n in names) + f"  {100 * min(acc.values()):5.1f}%")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
