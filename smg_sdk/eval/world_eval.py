"""``smg eval subjectworld``: a preset on held-out SubjectWorld requests, every metric with a 95 % interval.

For each subject count, ``samples`` held-out requests (identities never seen in training) are
generated with the preset and scored by the oracle against the exact ground truth. Three rows
are baselines, not methods: ``ground-truth`` (the target renders: the ceiling),
``vae-round-trip`` (the target renders encoded and decoded by the ``tiny`` preset's VAE: the
ceiling of any model that draws through that VAE) and ``copy-paste`` (the references pasted as
they are, on the first reference's background). ``no_references``
drops the references and prompts with class words: the text-only row. ``aligned`` draws the
*aligned* set instead: the same held-out scenes, layouts and relations, but every subject is its
class's typical identity (``SubjectWorld(identities="typical")``), so the text prior and the
reference agree; the default set is *misaligned* (no held-out identity is its class's typical one).

The result has the shape other tools read (``results.json``)::

    {"preset": NAME, "samples": N, "seed": S, "steps": ..., "no_references": bool, "candidates": N,
     "aligned": bool, "identities": "heldout" | "typical",
     "results": {"<k>": {"<metric>": {"mean": float, "ci95": [lo, hi]}}},
     "seconds_per_request": {"<k>": float}}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.subjectworld.scenes import Scene
from ..data.subjectworld.world import SubjectWorld, WorldSample, render_scene
from ..errors import RequestError
from .oracle import Oracle
from .world_metrics import LOWER_IS_BETTER, METRICS, SceneTruth, match, score

BASELINES = ("ground-truth", "vae-round-trip", "copy-paste")
"""Rows that run no generative model (``vae-round-trip`` runs only the ``tiny`` preset's VAE)."""


@dataclass
class WorldEvalConfig:
    """What to evaluate. ``options`` are the preset's keyword options; ``steps`` None = the preset's default."""

    preset: str
    subjects: Sequence[int] = (1, 2, 3, 4)
    samples: int = 32
    seed: int = 0
    steps: int | None = None
    no_references: bool = False
    describe: bool = False
    """Text-only rows: the prompt names each subject's whole identity ("a red star with yellow
    stripes"), not only its class: what the model can draw from words alone."""
    side: int = 128
    options: dict[str, Any] = field(default_factory=dict)
    true_cfg_scale: float | None = None
    """None: the preset's own setting. > 1: true classifier-free guidance against the empty
    prompt (``negative_prompt=""``), so each step runs the transformer twice; 1: none."""
    negative_references: bool | None = None
    """With true CFG: whether the negative branch keeps the references (True) or drops them
    (False: the guidance also pushes toward them; :class:`~smg_sdk.types.Request`); None: the
    preset's own setting (else True)."""
    candidates: int = 1
    """> 1: test-time scaling: each request draws this many candidates (``num_candidates``) and
    the image scored is the one the preset's verifier ranks first."""
    aligned: bool = False
    """True: the aligned set (every subject its class's typical identity, so prompt and reference
    agree); False: the held-out identities, none of them typical (the misaligned set)."""

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise RequestError(f"samples must be a whole number >= 1, got {self.samples!r}.")
        counts = tuple(self.subjects)
        if not counts or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 6 for k in counts):
            raise RequestError(f"subjects must be subject counts in 1..6 (e.g. 1,2,3,4), got {self.subjects!r}.")
        self.subjects = counts
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise RequestError(f"steps must be a whole number >= 1, got {self.steps!r}.")
        scale = self.true_cfg_scale
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 <= scale <= 100):
            raise RequestError(f"true_cfg_scale must be a number in [1, 100] (1: no guidance), got {scale!r}.")
        if self.negative_references not in (None, True, False):
            raise RequestError(f"negative_references must be True, False or None, got {self.negative_references!r}.")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise RequestError(f"candidates must be a whole number >= 1, got {self.candidates!r}.")
        if self.candidates > 1 and self.preset in BASELINES:
            raise RequestError(f"candidates apply to a model preset, not to the {self.preset!r} baseline.")
        if (scale is not None or self.negative_references is not None) and self.preset in BASELINES:
            raise RequestError(f"--true-cfg and --negative-references apply to a model preset, not to the "
                               f"{self.preset!r} baseline.")
        if self.no_references and self.preset in BASELINES:
            raise RequestError(f"--no-references applies to a model preset, not to the {self.preset!r} baseline.")
        if not isinstance(self.aligned, bool):
            raise RequestError(f"aligned must be True or False, got {self.aligned!r}.")
        if self.describe and not self.no_references:
            raise RequestError("--describe names the identities in the prompt; it applies to the text-only row: "
                               "add --no-references.")


def prior_share(identities, reading) -> float:
    """Share of the requested subjects drawn in their class's typical identity (the text prior;
    reported as ``prior`` on text-only rows)."""
    from ..data.subjectworld.identities import typical_identity

    truth = SceneTruth("", list(identities), {}, (), 0)
    drawn = match(truth, reading)
    return float(np.mean([d is not None and d.identity() == typical_identity(i.shape) for i, d in zip(identities, drawn)]))


def ci95(values: Sequence[float], seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of the mean of ``values``."""
    data = np.asarray(values, np.float64)
    if len(data) < 2:
        return float(data.mean()), float(data.mean())
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _copy_paste_image(sample: WorldSample) -> Image.Image:
    refs = [r[0] for r in sample.reference_scenes]
    pasted = Scene(refs[0].background, tuple(r.subjects[0] for r in refs), (), sample.scene.side)
    return Image.fromarray(render_scene(pasted)[0])


def _vae_round_trip(side: int) -> Callable[[WorldSample, int], Image.Image]:
    """``(sample, i) ->`` the target render encoded and decoded by the ``tiny`` preset's VAE at ``side``."""
    from ..pipeline import SubjectPipeline

    backend = SubjectPipeline.from_preset("tiny").backend

    def round_trip(sample: WorldSample, i: int) -> Image.Image:
        with torch.no_grad():
            latents = backend.encode_images([sample.target], side, side)[0].tokens
            return backend.decode(latents, side, side)[0]

    return round_trip


def _generator(config: WorldEvalConfig, pipe=None) -> Callable[[WorldSample, int], Image.Image]:
    """A function ``(sample, i) -> image`` for the configured preset or baseline (or ``pipe`` itself)."""
    if config.preset == "ground-truth":
        return lambda sample, i: sample.target
    if config.preset == "copy-paste":
        return lambda sample, i: _copy_paste_image(sample)
    if config.preset == "vae-round-trip":
        return _vae_round_trip(config.side)
    if pipe is None:
        from ..pipeline import SubjectPipeline

        pipe = SubjectPipeline.from_preset(config.preset, **config.options)
    pipe.set_progress_bar_config(disable=True)
    guidance = _guidance(config)

    def generate(sample: WorldSample, i: int) -> Image.Image:
        if config.no_references:
            prompt, subjects = (sample.described_caption if config.describe else sample.caption), []
        else:
            prompt, subjects = sample.prompt, sample.subjects()
        out = pipe(prompt, subjects, height=config.side, width=config.side, num_inference_steps=config.steps,
                   seed=config.seed * 1_000_003 + i, num_candidates=config.candidates, **guidance)
        return out.images[0]

    return generate


def _guidance(config: WorldEvalConfig) -> dict[str, Any]:
    """The pipeline call's true-CFG keywords: only those the configuration sets (else the preset's)."""
    out: dict[str, Any] = {}
    if config.true_cfg_scale is not None:
        out["true_cfg_scale"] = config.true_cfg_scale
        if config.true_cfg_scale > 1:
            out["negative_prompt"] = ""
    if config.negative_references is not None:
        out["negative_references"] = config.negative_references
    return out


@dataclass
class WorldEvalResult:
    """The ``results.json`` payload and, per subject count, a few (references, target, output) rows to look at.

    ``payload["seconds_per_request"]["<k>"]``: the median wall seconds of one request's
    generation (the verifier's ranking included, the scoring not), measured in this run; the
    median, so a first request that loads a lazy model does not count."""

    payload: dict[str, Any]
    examples: dict[int, list[tuple[list[Image.Image], Image.Image, Image.Image]]]


def evaluate(config: WorldEvalConfig, progress: bool = True, examples_per_count: int = 3,
             pipeline=None) -> WorldEvalResult:
    """Generate and score ``config.samples`` held-out requests per subject count.

    ``pipeline``: a :class:`~smg_sdk.SubjectPipeline` to evaluate instead of building
    ``config.preset`` (the name then only labels the results; training evaluates its model this way).
    """
    generate, oracle = _generator(config, pipeline), Oracle()
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    examples: dict[int, list] = {}
    bar = tqdm(total=config.samples * len(config.subjects), desc=f"eval {config.preset}", disable=not progress)
    for k in config.subjects:
        world = SubjectWorld(split="heldout", kind="reference", seed=config.seed, subjects=(k,), side=config.side,
                             identities="typical" if config.aligned else "split")
        per_metric: dict[str, list[float]] = {m: [] for m in METRICS}
        times: list[float] = []
        for i in range(config.samples):
            sample = world[i]
            start = time.perf_counter()
            image = generate(sample, i)
            times.append(time.perf_counter() - start)
            reading = oracle.read(image)
            for name, value in score(SceneTruth.from_sample(sample), reading).items():
                per_metric.setdefault(name, []).append(value)
            if config.no_references:
                per_metric.setdefault("prior", []).append(prior_share(sample.identities, reading))
            if i < examples_per_count:
                examples.setdefault(k, []).append((sample.references, sample.target, image))
            bar.update(1)
        results[str(k)] = {m: {"mean": float(np.mean(v)), "ci95": list(ci95(v, config.seed))} for m, v in per_metric.items()}
        seconds[str(k)] = float(np.median(times))
    bar.close()
    payload = {"preset": config.preset, "samples": config.samples, "seed": config.seed, "steps": config.steps,
               "no_references": config.no_references, "describe": config.describe, "side": config.side,
               "true_cfg_scale": config.true_cfg_scale, "negative_references": config.negative_references,
               "candidates": config.candidates, "aligned": config.aligned,
               "identities": "typical" if config.aligned else "heldout", "results": results,
               "seconds_per_request": seconds}
    return WorldEvalResult(payload, examples)


def heldout_scores(pipeline, subjects: Sequence[int] = (1, 2), samples: int = 8, seed: int = 1,
                   steps: int | None = None, metrics: Sequence[str] | None = None, **config: Any) -> dict[str, float]:
    """Mean oracle scores of ``pipeline`` on ``samples`` held-out requests per subject count,
    averaged over the counts: what a training recipe prints as its evaluation line.

    ``metrics``: the names to keep (default: every metric of the first count, in order);
    ``steps``: denoising steps (None: the pipeline's default); ``config``: other
    :class:`WorldEvalConfig` fields (``no_references``, ``describe``, ``true_cfg_scale``, ``aligned``).
    Raises :class:`~smg_sdk.RequestError` for bad settings, as :class:`WorldEvalConfig` does.
    """
    run = WorldEvalConfig("training", tuple(subjects), samples, seed=seed, steps=steps, **config)
    results = evaluate(run, progress=False, examples_per_count=0, pipeline=pipeline).payload["results"]
    names = [m for m in results[str(run.subjects[0])] if metrics is None or m in metrics]
    return {m: sum(r[m]["mean"] for r in results.values()) / len(results) for m in names}


def format_table(payload: dict[str, Any]) -> str:
    """The results as a text table: one row per subject count, ``mean [lo, hi]`` per metric."""
    flags = [payload["preset"]]
    flags += ["--no-references"] if payload.get("no_references") else []
    flags += ["--describe"] if payload.get("describe") else []
    flags += ["--aligned"] if payload.get("aligned") else []
    if payload.get("true_cfg_scale") is not None:
        flags.append(f"--true-cfg {payload['true_cfg_scale']:g}")
    if payload.get("negative_references") is not None:
        flags.append(f"--negative-references {'keep' if payload['negative_references'] else 'drop'}")
    title = " ".join(flags) + (f", {payload['candidates']} candidates" if payload.get("candidates", 1) > 1 else "")
    metrics = list(next(iter(payload["results"].values())))
    header = ["k"] + [m + (" (lower)" if m in LOWER_IS_BETTER else "") for m in metrics]
    rows = [[k] + [f"{v[m]['mean']:.3f} [{v[m]['ci95'][0]:.2f},{v[m]['ci95'][1]:.2f}]" for m in metrics]
            for k, v in payload["results"].items()]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = [f"{title}: {payload['samples']} held-out samples per subject count, seed {payload['seed']}"]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def contact_sheet(result: WorldEvalResult) -> Image.Image:
    """Rows of references | target | output, grouped by subject count."""
    from ..gallery import contact_sheet as tile

    width = max((len(refs) for rows in result.examples.values() for refs, _, _ in rows), default=1) + 2
    images, captions = [], []
    for k, rows in result.examples.items():
        for refs, target, output in rows:
            padded = refs + [Image.new("RGB", target.size, "white")] * (width - 2 - len(refs))
            images += padded + [target, output]
            captions += [f"k={k} ref {j + 1}" if j < len(refs) else "" for j in range(width - 2)] + ["target", "output"]
    return tile(images, captions, columns=width)


def write_outputs(result: WorldEvalResult, out: str | Path) -> Path:
    """``out/results.json`` and ``out/contact_sheet.png``, written atomically; returns the folder."""
    from ..atomic import atomic_folder

    with atomic_folder(out, kind="subjectworld-eval") as staging:
        (staging / "results.json").write_text(json.dumps(result.payload, indent=2))
        contact_sheet(result).save(staging / "contact_sheet.png")
    return Path(out).expanduser().resolve()


__all__ = ["BASELINES", "WorldEvalConfig", "WorldEvalResult", "ci95", "contact_sheet", "evaluate", "format_table",
           "heldout_scores", "write_outputs"]
