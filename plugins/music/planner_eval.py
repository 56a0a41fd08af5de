"""How well a MUSIC planner plans: valid-plan rate and agreement with SubjectWorld's ground truth.

For each request (a held-out SubjectWorld scene: identities never seen in training) the
planner's MLLM writes **one first-round sample** with the planner's own prompt, budget,
temperature and early stop (:meth:`~smg_plugins.music.planner.MusicPlanner.sample`), and that
raw text is parsed strictly (:func:`~smg_plugins.music.plan_format.parse_plan`): no retries,
no fallback. Per request:

- ``valid``: 1 if the raw text parses, else 0 (the valid-plan rate is its mean);
- ``cell_accuracy``: share of the 64 cells whose id equals the ground-truth layout's
  (``sample.layout``), valid plans only;
- ``subject_iou``: mean over subjects of the IoU of the planned and true cell sets, valid only
  (cell accuracy is dominated by empty cells; this is not);
- ``relations``: share of the instruction's relations that hold between the planned subjects'
  cell centroids (:func:`smg_sdk.SubjectWorld`'s ``relation_holds`` rule on the 8 x 8 grid),
  valid only. The ground-truth layout itself scores slightly below 1 on it (cells quantise).

Means come with 95 % percentile-bootstrap intervals (:func:`smg_sdk.ci95`). Two request sets:
``heldout`` (held-out identities, seen relation combinations, per subject count) and
``unseen`` (held-out identities and the relation combinations kept out of training,
:mod:`~smg_plugins.music.world_data`). The heuristic planner's first plan is scored on the same
requests as a reference row.

Requests are sampled ``batch_size`` at a time in one ``generate`` call (prompts left-padded;
:meth:`~smg_plugins.music.planner.MusicPlanner.sample_requests`), which is what makes 32
requests cheap enough for a test.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from smg_sdk import ConfigError, Request, atomic_folder, ci95

from .plan_format import PlanFormatError, parse_plan
from .planner import MusicPlanner
from .world_data import WorldPlannerData

METRICS = ("valid", "cell_accuracy", "subject_iou", "relations")


@dataclass
class PlannerEvalConfig:
    """What to measure. ``model_path``: planner MLLM folder (None: the ``music-tiny`` preset's trained
    planner); ``adapter_path``: its LoRA; ``samples``: requests per subject count and set;
    ``subjects`` / ``unseen_subjects``: counts of the held-out and unseen-combination sets
    (``()``: skip the set); ``temperature``: None for the planner's own (0.9); ``batch_size``:
    requests per ``generate`` call; ``image_size``: side the references are resized to for a
    ``model_path`` planner (None: the planner's default, 448; the tiny planner is trained at 64)."""

    model_path: str | None = None
    adapter_path: str | None = None
    samples: int = 64
    subjects: Sequence[int] = (1, 2, 3, 4)
    unseen_subjects: Sequence[int] = (3, 4)
    seed: int = 0
    temperature: float | None = None
    batch_size: int = 16
    progress: bool = False
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError(f"samples and batch_size must be >= 1, got {self.samples} and {self.batch_size}.")


def build_planner(model_path: str | None = None, adapter_path: str | None = None, **settings: Any) -> MusicPlanner:
    """The ``music`` planner as the ``music-tiny`` preset builds it (trained tiny planner by default)."""
    from .preset import tiny_planner_settings

    if model_path is None:
        return MusicPlanner(**{**tiny_planner_settings(), **settings})
    return MusicPlanner(model_path=model_path, adapter_path=adapter_path, **settings)


def sample_first_round(planner: MusicPlanner, requests: Sequence[Request], seed: int,
                       temperature: float | None = None) -> list[str]:
    """One raw first-round sample per request (:meth:`MusicPlanner.sample_requests`: one ``generate`` call)."""
    return planner.sample_requests(list(requests), seed, temperature)


def _centres(layout: np.ndarray, count: int) -> dict[int, tuple[float, float]]:
    centres = {}
    for k in range(1, count + 1):
        rows, cols = np.nonzero(layout == k)
        if len(rows):
            centres[k] = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
    return centres


def layout_scores(layout: np.ndarray, truth: np.ndarray, relations: Sequence[Any]) -> dict[str, float]:
    """``cell_accuracy``, ``subject_iou`` and ``relations`` of a planned ``(8, 8)`` layout against the truth."""
    from smg_sdk import relation_holds

    count = int(truth.max())
    ious = []
    for k in range(1, count + 1):
        a, b = layout == k, truth == k
        union = int((a | b).sum())
        ious.append(float((a & b).sum()) / union if union else 1.0)
    centres = _centres(layout, count)
    held = [relation_holds(r, centres, layout.shape[1]) for r in relations]
    return {"cell_accuracy": float((layout == truth).mean()), "subject_iou": float(np.mean(ious)),
            "relations": float(np.mean(held)) if held else 1.0}


def score_text(text: str, sample: Any) -> dict[str, float]:
    """Per-request metrics of one raw planner text against a SubjectWorld sample (see the module docstring)."""
    try:
        plan = parse_plan(text, len(sample.scene.subjects))
    except PlanFormatError:
        return {"valid": 0.0}
    return {"valid": 1.0, **layout_scores(plan.layout.numpy(), sample.layout, sample.scene.relations)}


def request_of(sample: Any) -> Request:
    """The planner request of a SubjectWorld sample (its references and instruction)."""
    return Request(prompt=sample.prompt, subjects=sample.subjects())


def summarise(rows: Sequence[dict[str, float]], seed: int = 0) -> dict[str, Any]:
    """Mean, 95 % interval and count of each metric over the requests that have it."""
    out: dict[str, Any] = {"requests": len(rows)}
    for name in METRICS:
        values = [r[name] for r in rows if name in r]
        out[name] = {"mean": float(np.mean(values)) if values else None,
                     "ci95": list(ci95(values, seed)) if values else None, "n": len(values)}
    return out


def _heuristic_rows(samples: Sequence[Any]) -> list[dict[str, float]]:
    from .heuristic import HeuristicPlanner

    heuristic = HeuristicPlanner()
    rows = []
    for sample in samples:
        plan = heuristic.plans(request_of(sample), 1)[0]
        rows.append({"valid": 1.0, **layout_scores(plan.layout.numpy(), sample.layout, sample.scene.relations)})
    return rows


def _groups(config: PlannerEvalConfig) -> list[tuple[str, int, WorldPlannerData]]:
    groups = [("heldout", k, WorldPlannerData(config.samples, "heldout", (k,), "seen", config.seed))
              for k in config.subjects]
    return groups + [("unseen", k, WorldPlannerData(config.samples, "heldout", (k,), "unseen", config.seed))
                     for k in config.unseen_subjects]


def evaluate_planner(config: PlannerEvalConfig, planner: MusicPlanner | None = None) -> dict[str, Any]:
    """Score the planner (and the heuristic planner) on the held-out and unseen-combination sets.

    Returns ``{"config": ..., "planner": {set: {k: summary}}, "heuristic": {set: {k: summary}}}``
    with :func:`summarise` summaries; deterministic in the config.
    """
    if planner is None:
        sized = {"image_size": config.image_size} if config.image_size is not None else {}
        planner = build_planner(config.model_path, config.adapter_path, **sized)
    report: dict[str, Any] = {"config": {**dataclasses.asdict(config), "subjects": list(config.subjects),
                                         "unseen_subjects": list(config.unseen_subjects)},
                              "model": planner.model_path, "planner": {}, "heuristic": {}}
    groups = _groups(config)
    bar = tqdm(total=sum(len(g) for _, _, g in groups), desc="planning", disable=not config.progress)
    for name, k, data in groups:
        samples = [data.world_sample(i) for i in range(len(data))]
        rows = []
        for start in range(0, len(samples), config.batch_size):
            chunk = samples[start:start + config.batch_size]
            texts = sample_first_round(planner, [request_of(s) for s in chunk],
                                       seed=config.seed * 1_000_003 + k * 1009 + start, temperature=config.temperature)
            rows += [score_text(t, s) for t, s in zip(texts, chunk)]
            bar.update(len(chunk))
        report["planner"].setdefault(name, {})[str(k)] = summarise(rows, config.seed)
        report["heuristic"].setdefault(name, {})[str(k)] = summarise(_heuristic_rows(samples), config.seed)
    bar.close()
    return report


def _cell(summary: dict[str, Any], name: str) -> str:
    entry = summary[name]
    if entry["mean"] is None:
        return "-"
    lo, hi = entry["ci95"]
    return f"{100 * entry['mean']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table: one row per (planner, set, k), metrics in % with 95 % intervals."""
    lines = [f"planner: {report['model']}",
             "| planner | set | k | requests | valid plan % | cell accuracy % | subject IoU % | relations hold % |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for who in ("planner", "heuristic"):
        for name, by_k in report[who].items():
            for k, summary in by_k.items():
                cells = " | ".join(_cell(summary, m) for m in METRICS)
                lines.append(f"| {who} | {name} | {k} | {summary['requests']} | {cells} |")
    return "\n".join(lines)


def write_report(report: dict[str, Any], folder: str | Path) -> Path:
    """``folder/report.json`` (the report) and ``folder/report.md`` (:func:`format_report`), atomically."""
    folder = Path(folder).expanduser().resolve()
    with atomic_folder(folder, kind="planner evaluation", recognise=lambda f: (f / "report.json").is_file()) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.md").write_text(format_report(report) + "\n")
    return folder / "report.json"


__all__ = ["METRICS", "PlannerEvalConfig", "build_planner", "evaluate_planner", "format_report", "layout_scores",
           "request_of", "sample_first_round", "score_text", "summarise", "write_report"]
