"""SubjectPipeline: encoders -> aggregators -> (plans) -> backend sampling -> verifier.

The call signature follows diffusers (``generator``, ``num_inference_steps``,
``guidance_scale``, ``output_type``, ``callback_on_step_end``, a progress bar).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .backends.flux_sampling import CachedReferenceOptions
from .conditions import ConditionSet
from .errors import RequestError
from .interfaces import Aggregator, AttentionRule, ConditionEncoder, DenoisingSchedule, Planner, Verifier
from .plugins.manager import get_registry
from .serialization import load_pipeline, save_pipeline
from .types import Plan, PipelineOutput, Request, Subject

ComponentSpec = Any
"""A component object, a registered name, ``(name, config)`` or ``{"name": ..., **config}``."""


def build_component(kind: str, spec: ComponentSpec) -> Any:
    """Turn a spec into a component through the registry (objects pass through)."""
    if spec is None:
        return None
    registry = get_registry()
    if isinstance(spec, str):
        return registry.build(kind, spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return registry.build(kind, spec[0], **dict(spec[1]))
    if isinstance(spec, dict) and "name" in spec:
        config = {k: v for k, v in spec.items() if k != "name"}
        return registry.build(kind, spec["name"], **config)
    return spec


class SubjectPipeline:
    """A composed subject-driven generation pipeline.

    Build one with :meth:`compose` (components by registered name or as objects),
    :meth:`from_preset` or :meth:`from_pretrained`; call it like a diffusers pipeline.
    """

    def __init__(
        self,
        backend,
        encoders: Sequence[ConditionEncoder],
        aggregators: Sequence[Aggregator] = (),
        rules: Sequence[AttentionRule] = (),
        schedule: DenoisingSchedule | None = None,
        planner: Planner | None = None,
        verifier: Verifier | None = None,
        defaults: dict[str, Any] | None = None,
    ):
        self.backend = backend
        self.encoders = list(encoders)
        self.aggregators = list(aggregators)
        self.rules = list(rules)
        self.schedule = schedule
        self.planner = planner
        self.verifier = verifier
        self.defaults: dict[str, Any] = dict(defaults or {})
        self._progress = True

    # ------------------------------------------------------------------ construction
    @classmethod
    def compose(
        cls,
        backend,
        encoders: Sequence[ComponentSpec] = ("flux-text",),
        aggregators: Sequence[ComponentSpec] = (),
        rules: Sequence[ComponentSpec] = (),
        schedule: ComponentSpec = "constant",
        planner: ComponentSpec = None,
        verifier: ComponentSpec = None,
        defaults: dict[str, Any] | None = None,
    ) -> "SubjectPipeline":
        """Assemble a pipeline; string specs are looked up in the plugin registry."""
        if isinstance(backend, (str, tuple, dict)):
            backend = build_component("backend", backend)
        return cls(
            backend,
            [build_component("encoder", e) for e in encoders],
            [build_component("aggregator", a) for a in aggregators],
            [build_component("rule", r) for r in rules],
            build_component("schedule", schedule),
            build_component("planner", planner),
            build_component("verifier", verifier),
            defaults,
        )

    @classmethod
    def from_preset(cls, name: str, **options: Any) -> "SubjectPipeline":
        """A ready pipeline from a registered preset (``"tiny"`` ships with the core)."""
        return get_registry().build("preset", name, **options)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a JSON manifest plus safetensors weights; the folder is replaced atomically."""
        return save_pipeline(self, Path(folder))

    @classmethod
    def from_pretrained(cls, folder: str | Path, **backend_options: Any) -> "SubjectPipeline":
        """Rebuild a pipeline saved with :meth:`save_pretrained`."""
        return load_pipeline(cls, Path(folder), **backend_options)

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self._progress = not disable

    # ------------------------------------------------------------------ running
    def make_request(self, prompt: str, subjects: Sequence[Subject | Image.Image] | None = None, **kwargs: Any) -> Request:
        """A validated :class:`Request` with this pipeline's defaults filled in."""
        subjects = [s if isinstance(s, Subject) else Subject(s) for s in (subjects or [])]
        values = {k: v for k, v in self.defaults.items() if k in {f.name for f in dataclasses.fields(Request)}}
        values.update({k: v for k, v in kwargs.items() if v is not None})
        values.setdefault("size_multiple", getattr(self.backend, "size_multiple", 16))
        return Request(prompt=prompt, subjects=subjects, **values)

    def encode(self, request: Request, plan: Plan | None = None) -> ConditionSet:
        """Run every encoder, then every aggregator, for one request (batch 1)."""
        if plan is not None and plan.prompt:
            request = dataclasses.replace(request, prompt=plan.prompt)
        conditions = ConditionSet.merge(encoder.encode(request, self.backend) for encoder in self.encoders)
        if plan is not None:
            conditions.meta["plan"] = plan
        for aggregator in self.aggregators:
            conditions = aggregator.aggregate(conditions, request)
        return conditions

    def __call__(
        self,
        prompt: str,
        subjects: Sequence[Subject | Image.Image] | None = None,
        *,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        num_images_per_prompt: int = 1,
        num_candidates: int = 1,
        negative_prompt: str | None = None,
        true_cfg_scale: float = 1.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[["SubjectPipeline", int, torch.Tensor, dict], dict | None] | None = None,
        cached_references: CachedReferenceOptions | None = None,
    ) -> PipelineOutput:
        """Generate images of ``subjects`` following ``prompt``.

        With a planner, ``num_candidates`` plans are drawn and one image is generated per
        plan; with a verifier, candidates are scored and returned best first.
        """
        if output_type not in ("pil", "np", "pt", "latent"):
            raise RequestError(f"output_type must be 'pil', 'np', 'pt' or 'latent', not {output_type!r}.")
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
            raise RequestError(f"num_candidates must be an integer >= 1, got {num_candidates!r}.")
        request = self.make_request(
            prompt,
            subjects,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            seed=seed,
            num_images_per_prompt=num_images_per_prompt,
            negative_prompt=negative_prompt,
            true_cfg_scale=true_cfg_scale,
        )
        generator = request.make_generator(self.backend.device)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        plans: list[Plan | None] = [None] * num_candidates
        if self.planner is not None:
            plans = list(self.planner.plan(request, num_candidates, generator))
        timings["plan"] = time.perf_counter() - clock

        images, trace, used_plans = [], [], []
        step_callback = None
        if callback_on_step_end is not None:
            step_callback = lambda i, t, tensors: callback_on_step_end(self, i, t, tensors)  # noqa: E731
        for plan in plans:
            clock = time.perf_counter()
            conditions = self.encode(request, plan).repeat(request.num_images_per_prompt)
            negative = None
            if request.negative_prompt is not None and request.true_cfg_scale > 1:
                negative_request = dataclasses.replace(request, prompt=request.negative_prompt)
                negative = self.encode(negative_request, plan).repeat(request.num_images_per_prompt)
            timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - clock
            clock = time.perf_counter()
            result = self.backend.denoise(
                conditions,
                height=request.height,
                width=request.width,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                generator=generator,
                rules=self.rules,
                schedule=self.schedule,
                request=request,
                negative_conditions=negative,
                true_cfg_scale=request.true_cfg_scale,
                latents=latents,
                callback=step_callback,
                progress=self._progress,
                cached=cached_references,
            )
            timings["denoise"] = timings.get("denoise", 0.0) + time.perf_counter() - clock
            clock = time.perf_counter()
            decoded = self.backend.decode(result.latents, request.height, request.width, output_type)
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - clock
            images.append(decoded)
            trace = result.trace
            used_plans.extend([plan] * request.num_images_per_prompt if plan is not None else [])

        flat = _flatten(images, output_type)
        scores: list[float] = []
        candidates = None
        if self.verifier is not None and output_type == "pil":
            clock = time.perf_counter()
            scores = [float(s) for s in self.verifier.score(flat, request, used_plans or None)]
            timings["verify"] = time.perf_counter() - clock
            order = sorted(range(len(flat)), key=lambda i: -scores[i])
            candidates = list(flat)
            flat = [flat[i] for i in order]
            scores = [scores[i] for i in order]
            used_plans = [used_plans[i] for i in order] if used_plans else []
        return PipelineOutput(
            images=flat, plans=used_plans, scores=scores, candidates=candidates, timings=timings, trace=trace
        )


def _flatten(chunks: list[Any], output_type: str):
    if output_type == "pil":
        return [image for chunk in chunks for image in chunk]
    if output_type == "np":
        import numpy as np

        return np.concatenate(chunks, axis=0)
    return torch.cat(chunks, dim=0)
