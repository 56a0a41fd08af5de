#!/usr/bin/env python
"""Training curves of ``smg train subjectworld`` runs as one PNG (needs matplotlib: ``pip install smg-sdk[plots]``).

    python scripts/plot_training.py RUN/base RUN/lora [RUN/vae] --out docs/training_curves.png

Each run folder contributes its ``history.json`` (base, reference-lora: loss per step and the
evaluation lines) or ``vae/metrics.json`` (held-out PSNR against steps). One row of panels per
run: the loss (smoothed over 50 steps) and the held-out scores against steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _smooth(values: list[float], window: int = 50) -> np.ndarray:
    data = np.asarray(values, float)
    if len(data) < window:
        return data
    return np.convolve(data, np.ones(window) / window, mode="valid")


def _panels(run: Path) -> tuple[str, dict[str, tuple[list, list]], dict[str, tuple[list, list]]]:
    """Title, loss curves and score curves of one run folder."""
    metrics = next((f for f in (run / "vae" / "metrics.json", run / "metrics.json") if f.is_file()), None)
    if metrics is not None:  # a VAE run folder, or the exported VAE folder itself
        history = json.loads(metrics.read_text())["history"]
        steps = history["step"]
        losses = {"loss": (steps, history["loss"])}
        scores = {f"PSNR {k[5:]} (dB)": (steps, history[k]) for k in ("psnr_target", "psnr_reference")}
        return f"{run.name}: VAE", losses, scores
    history = json.loads((run / "history.json").read_text())
    smoothed = _smooth(history["losses"])
    losses = {"loss (50-step mean)": (list(range(len(history["losses"]) - len(smoothed) + 1,
                                                 len(history["losses"]) + 1)), list(smoothed))}
    lines = history["evaluations"]
    names = [k for k in (lines[0] if lines else {}) if k not in ("step", "loss")]
    scores = {name: ([line["step"] for line in lines], [line[name] for line in lines]) for name in names}
    return run.name, losses, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("training_curves.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(args.runs), 2, figsize=(11, 3.2 * len(args.runs)), squeeze=False)
    for ax in axes.flat:  # up to 20 distinct colours: evaluation lines may carry a dozen scores
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for row, run in zip(axes, args.runs):
        title, losses, scores = _panels(run)
        for name, (x, y) in losses.items():
            row[0].plot(x, y, label=name)
        for name, (x, y) in scores.items():
            row[1].plot(x, y, marker="o", label=name, linestyle="--" if name.startswith("cfg_") else "-")
        row[0].set_title(f"{title}: training loss"), row[1].set_title(f"{title}: held-out scores")
        for ax in row:
            ax.set_xlabel("step"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
