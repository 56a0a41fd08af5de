"""SubjectPipeline: plan -> encode (encoders -> aggregators) -> sample -> decode -> rank.

Each stage is one method of :class:`SubjectPipeline` (:meth:`~SubjectPipeline.plan`,
:meth:`~SubjectPipeline.encode_candidates`, :meth:`~SubjectPipeline.sample`,
:meth:`~SubjectPipeline.decode`, :meth:`~SubjectPipeline.rank`); ``__call__`` runs them in
that order. The call signature follows diffusers (``generator``, ``num_inference_steps``,
``guidance_scale``, ``output_type``, ``callback_on_step_end``, a progress bar).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch
from PIL import Image

from .call_checks import as_subjects, check_call_options, check_latents, run_callback
from .candidates import batch_groups, encode_shared, stack
from .conditions import ConditionSet
from .contracts import check_composition
from .encoding_cache import EncodingCache, as_encoding_cache
from .errors import PlacementError, RequestError
from .interfaces import Aggregator, AttentionRule, ConditionEncoder, DenoisingSchedule, Planner, Verifier
from .plugins.manager import get_registry
from .sampling import CachedReferenceOptions, SampleResult, prepare_sampling
from .serialization import load_pipeline, save_pipeline
from .types import MAX_BATCH, BatchRecord, Plan, PipelineOutput, Request, Subject

ComponentSpec = Any
"""A component object, a registered name, ``(name, config)`` or ``{"name": ..., **config}``."""

_Method = TypeVar("_Method", bound=Callable[..., Any])


def serialised(method: _Method) -> _Method:
    """Run ``method`` holding ``self.lock``: concurrent calls on one pipeline (or backend) take turns."""

    @functools.wraps(method)
    def wrapper(self: "SubjectPipeline", *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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


def component_list(specs: Any, name: str) -> list[ComponentSpec]:
    """``specs`` as a list of component specs; one spec alone (``"flux-text"``) is a list of one."""
    if specs is None:
        return []
    if isinstance(specs, (str, dict)) or (
        isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[0], str) and isinstance(specs[1], dict)
    ):
        return [specs]
    if isinstance(specs, (list, tuple)):
        return list(specs)
    if hasattr(specs, "__iter__") and not hasattr(specs, "encode") and not hasattr(specs, "aggregate"):
        return list(specs)
    return [specs]


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
        encoding_cache: EncodingCache | bool = True,
    ):
        check_composition(list(encoders), list(aggregators), list(rules), schedule, planner, verifier)
        self.backend = backend
        self.encoders = list(encoders)
        self.aggregators = list(aggregators)
        self.rules = list(rules)
        self.schedule = schedule
        self.planner = planner
        self.verifier = verifier
        self.defaults: dict[str, Any] = dict(defaults or {})
        self.encoding_cache = encoding_cache  # type: ignore[assignment]  (the setter converts)
        self._progress = True
        self._own_lock = threading.RLock()
        self.last_encoder_calls: dict[str, int] = {}
        """``PipelineOutput.encoder_calls`` of the last generation (a convenience for logs; the output has it)."""
        self.last_candidate_batches: list[list[int]] = []
        """``PipelineOutput.candidate_batches`` of the last generation (a convenience; the output has it)."""
        self._offload_hooks: list[Any] = []
        self._offload_mode: str | None = None
        """``"model"`` or ``"group"`` while offload hooks are on, else None."""

    @property
    def lock(self) -> threading.RLock:
        """The lock every generation, encoding and training step holds (see ``docs/security.md``).

        It is the backend's lock when the backend has one, so pipelines sharing a backend (whose
        tokenizers and active adapters are shared state) also take turns; concurrent calls are
        serialised, never interleaved.
        """
        lock = getattr(self.backend, "lock", None)
        return lock if lock is not None else self._own_lock

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
        encoding_cache: EncodingCache | bool = True,
    ) -> "SubjectPipeline":
        """Assemble a pipeline; string specs are looked up in the plugin registry.

        ``encoding_cache``: reuse encoder outputs for repeated references and prompts (True,
        the default; False turns it off; or an :class:`~smg_sdk.encoding_cache.EncodingCache`).

        The components' declared contracts are checked (by ``__init__``): a component that needs
        a stream or ``meta`` key no component before it provides raises
        :class:`~smg_sdk.contracts.CompositionError` naming both.
        """
        if isinstance(backend, (str, tuple, dict)):
            backend = build_component("backend", backend)
        return cls(
            backend,
            [build_component("encoder", e) for e in component_list(encoders, "encoders")],
            [build_component("aggregator", a) for a in component_list(aggregators, "aggregators")],
            [build_component("rule", r) for r in component_list(rules, "rules")],
            build_component("schedule", schedule),
            build_component("planner", planner),
            build_component("verifier", verifier),
            defaults,
            encoding_cache,
        )

    @classmethod
    def from_preset(cls, name: str, **options: Any) -> "SubjectPipeline":
        """A ready pipeline from a registered preset (``"tiny"`` ships with the core)."""
        return get_registry().build("preset", name, **options)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a JSON manifest plus safetensors weights; the folder is replaced atomically."""
        return save_pipeline(self, Path(folder))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        trust_remote_code: bool = False,
        allow_external: Sequence[str | Path] = (),
        **backend_options: Any,
    ) -> "SubjectPipeline":
        """Rebuild a pipeline saved with :meth:`save_pretrained`; the folder is untrusted input.

        The manifest is schema-checked and every file checksummed before anything loads.
        ``trust_remote_code=True`` (yours to pass; a folder can never set it) lets components
        that take that option run a model's own code. ``allow_external`` lists locations
        outside the folder the manifest may point at (a base model saved by reference, an MLLM
        folder); anything else outside is refused. See ``docs/security.md``.
        """
        return load_pipeline(cls, Path(folder), trust_remote_code=trust_remote_code,
                             allow_external=allow_external, **backend_options)

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self._progress = not disable

    @property
    def components(self) -> list[Any]:
        """Every component, in data-flow order: encoders, aggregators, rules, schedule, planner, verifier."""
        single = [self.schedule, self.planner, self.verifier]
        return [*self.encoders, *self.aggregators, *self.rules, *(c for c in single if c is not None)]

    @serialised
    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "SubjectPipeline":
        """Place the whole pipeline: the backend's models and every module any component holds.

        Components that load their models lazily (an MLLM encoder or planner, a CLIP verifier)
        load them first (their own ``to``); then every module :func:`smg_sdk.placement.inventory`
        finds (the backend's, an MLLM, SigLIP + Redux, CLIP, learnable aggregators) is moved,
        each once. ``dtype`` casts floating-point weights (e.g. ``torch.bfloat16``); None leaves
        device or dtype as they are. Raises :class:`~smg_sdk.errors.PlacementError` while
        offloading is enabled (:meth:`disable_offload` first). Returns the pipeline.
        """
        from .placement import move, parse_device, parse_dtype

        device, dtype = parse_device(device), parse_dtype(dtype)
        if dtype is not None and not dtype.is_floating_point:
            raise PlacementError(f"dtype must be a floating-point dtype (torch.bfloat16, 'bf16', 'fp16', 'fp32'), got {dtype}.")
        if device is not None or dtype is not None:
            move(self.placement_inventory(), device, dtype)  # refuses while hooks manage a module
        for component in self.components:
            mover = getattr(component, "to", None)
            if callable(mover) and not isinstance(component, torch.nn.Module):
                mover(device=device, dtype=dtype)  # a component's own state beyond its modules (e.g. its device option)
        return self

    def placement_inventory(self):
        """Every module of the pipeline, by name, as :class:`smg_sdk.placement.Inventory` (lazy models loaded first)."""
        from .placement import inventory

        for component in self.components:
            loader = getattr(component, "to", None)
            if callable(loader) and not isinstance(component, torch.nn.Module):
                loader()  # loads a lazily-held model; moves nothing
        return inventory(self)

    @property
    def encoding_cache(self) -> EncodingCache | None:
        """Encoder outputs kept for repeated references (:mod:`smg_sdk.encoding_cache`); None: off.

        Assign True (a new cache), False/None (off) or an :class:`EncodingCache`; anything else
        raises :class:`~smg_sdk.errors.ConfigError`.
        """
        return self._encoding_cache

    @encoding_cache.setter
    def encoding_cache(self, option: EncodingCache | bool | None) -> None:
        self._encoding_cache = as_encoding_cache(option)

    @property
    def execution_device(self) -> torch.device:
        """The device the models compute on (the offload hooks' device once offloaded; see ``docs/gpu.md``)."""
        return torch.device(self.backend.device)

    @serialised
    def enable_model_cpu_offload(self, device: str | torch.device | None = None) -> "SubjectPipeline":
        """Keep every model on the CPU and move it whole to ``device`` when it runs (accelerate hooks).

        As diffusers' ``DiffusionPipeline.enable_model_cpu_offload`` (accelerate's
        ``CpuOffload`` hook on each model), over every model of the composed pipeline: the
        backend's and the components' (MLLM, SigLIP/Redux, CLIP); one model at a time is on
        ``device`` (:func:`smg_sdk.placement.exclusive_cpu_offload`). Modules that are
        components themselves (aggregators) stay on ``device``. ``device`` defaults to the
        current accelerator; raises :class:`~smg_sdk.errors.PlacementError` without one.
        Peak device memory: the largest model plus activations (``smg plan-memory --offload model``).
        """
        from .placement import enable_model_offload

        device = _accelerator(device)
        self._disable_offload()
        self._offload_hooks = enable_model_offload(self.placement_inventory(), device)
        self._offload_mode = "model"
        return self

    @serialised
    def enable_group_offload(self, onload_device: str | torch.device | None = None,
                             offload_device: str | torch.device = "cpu", offload_type: str = "block_level",
                             num_blocks_per_group: int | None = None, use_stream: bool = False) -> "SubjectPipeline":
        """diffusers group offloading (``diffusers.hooks.apply_group_offloading``) on every model.

        The transformer is offloaded by ``offload_type`` (``"block_level"``: groups of
        ``num_blocks_per_group`` blocks, default 1; ``"leaf_level"``: each layer); every other
        model (VAE, text encoders, MLLM, SigLIP/Redux, CLIP) at leaf level, whose hooks fire
        whatever method calls them. ``use_stream`` overlaps transfers on CUDA streams.
        Aggregators stay on ``onload_device``. Raises :class:`~smg_sdk.errors.PlacementError`
        for an unknown ``offload_type``, a bad ``num_blocks_per_group``, or ``use_stream`` on a
        device without streams (the CPU).
        """
        from .placement import enable_group_offload, parse_device

        onload = _accelerator(onload_device)
        self._disable_offload()
        enable_group_offload(self.placement_inventory(), onload, parse_device(offload_device, "offload_device"),
                             offload_type=offload_type, num_blocks_per_group=num_blocks_per_group,
                             use_stream=use_stream, denoisers=["backend.transformer"])
        self._offload_mode = "group"
        return self

    def place(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
              offload: str | None = None) -> "SubjectPipeline":
        """The memory options presets take, in one call: cast to ``dtype``, then place or offload.

        ``offload`` None moves everything to ``device`` (:meth:`to`); ``"model"`` and
        ``"group"`` keep the models on the CPU and run them on ``device``
        (:meth:`enable_model_cpu_offload`, :meth:`enable_group_offload` with its defaults).
        Raises :class:`~smg_sdk.errors.PlacementError` for another ``offload``.
        """
        if offload not in (None, "none", "model", "group"):
            raise PlacementError(f"offload must be None, 'model' or 'group', not {offload!r}.")
        if offload in (None, "none"):
            return self.to(device, dtype)
        self.to(dtype=dtype)
        if offload == "model":
            return self.enable_model_cpu_offload(device)
        return self.enable_group_offload(device)

    @serialised
    def disable_offload(self) -> "SubjectPipeline":
        """Remove every offload hook; models stay on the offload device (move them with :meth:`to`)."""
        self._disable_offload()
        return self

    def _disable_offload(self) -> None:
        from .placement import disable_offload, inventory

        disable_offload(inventory(self).models.values())
        self._offload_hooks, self._offload_mode = [], None

    def _free_models(self) -> None:
        """After a call under model offload, every model back on the CPU (diffusers' ``maybe_free_model_hooks``)."""
        for hook in self._offload_hooks:
            hook.offload()

    # ------------------------------------------------------------------ running
    def make_request(self, prompt: str, subjects: Sequence[Subject | Image.Image] | None = None, **kwargs: Any) -> Request:
        """A validated :class:`Request` with this pipeline's defaults filled in.

        ``subjects`` may be a list of subjects or images, or a single subject or image.
        """
        subjects = as_subjects(subjects)
        values = {k: v for k, v in self.defaults.items() if k in {f.name for f in dataclasses.fields(Request)}}
        values.update({k: v for k, v in kwargs.items() if v is not None})
        values.setdefault("size_multiple", getattr(self.backend, "size_multiple", 16))
        return Request(prompt=prompt, subjects=subjects, **values)

    @serialised
    def encode(self, request: Request, plan: Plan | None = None) -> ConditionSet:
        """Run every encoder, then every aggregator, for one request (batch 1)."""
        request = _with_plan_prompt(request, plan)
        conditions = ConditionSet.merge(encoder.encode(request, self.backend) for encoder in self.encoders)
        return self._aggregate(conditions, plan, request, rows=1)

    def _aggregate(self, conditions: ConditionSet, plan: Plan | None, request: Request, rows: int) -> ConditionSet:
        """The aggregator stage of one candidate: its plan into ``meta``, every aggregator in order, ``rows`` copies.

        The plan is in ``conditions.meta["plan"]`` for the aggregators and, after the copies,
        one per row in ``meta["plans"]`` for the rules.
        """
        if plan is not None:
            conditions.meta["plan"] = plan
        for aggregator in self.aggregators:
            conditions = aggregator.aggregate(conditions, request)
        conditions = conditions.repeat(rows)
        if plan is not None:
            conditions.meta["plans"] = [plan] * rows
        return conditions

    @torch.no_grad()  # as diffusers pipelines: learnable encoders/aggregators must not build graphs here
    @serialised
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
        true_cfg_scale: float | None = None,
        negative_references: bool | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[["SubjectPipeline", int, torch.Tensor, dict], dict | None] | None = None,
        cached_references: CachedReferenceOptions | None = None,
        candidate_batch_size: int | None = None,
    ) -> PipelineOutput:
        """Generate images of ``subjects`` following ``prompt``: plan -> encode -> sample -> decode -> rank.

        With a planner, ``num_candidates`` plans are drawn and one image is generated per
        plan; with a verifier, candidates are scored and returned best first (test-time
        scaling). Encodings that do not depend on the plan are computed once, and candidates
        go through the sampler together, at most ``candidate_batch_size`` per call (default:
        all; 1 = one after the other). ``latents`` are the starting latents of one candidate
        (batch ``num_images_per_prompt``); with several candidates the noise is drawn from
        ``generator`` in candidate order, so a candidate's noise does not depend on batching.
        ``callback_on_step_end`` sees the latents of the whole batch. True classifier-free
        guidance runs when ``negative_prompt`` is set (``""`` allowed) and ``true_cfg_scale`` > 1,
        as in diffusers' FluxPipeline; either left None takes the pipeline's ``defaults``.
        ``negative_references=False`` drops the references from the negative branch (see
        :class:`~smg_sdk.types.Request`).
        """
        check_call_options(output_type, num_candidates, candidate_batch_size, callback_on_step_end,
                           cached_references)
        request = self.make_request(
            prompt, subjects, height=height, width=width, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=generator, seed=seed,
            num_images_per_prompt=num_images_per_prompt, negative_prompt=negative_prompt,
            true_cfg_scale=true_cfg_scale, negative_references=negative_references,
        )
        _check_image_count(request, num_candidates)
        callback = None if callback_on_step_end is None else functools.partial(run_callback, self, callback_on_step_end)
        return self._generate(request, num_candidates, check_latents(latents, request, self.backend), output_type,
                              callback, cached_references, candidate_batch_size)

    def _generate(self, request: Request, num_candidates: int, latents: torch.Tensor | None, output_type: str,
                  callback: Callable | None, cached_references: CachedReferenceOptions | None,
                  candidate_batch_size: int | None) -> PipelineOutput:
        """Check that no module is off the execution device, run the stages, then offload the models.

        Models components load on first use are loaded before the check (enabling offload
        loaded them already), so a model that would load off the device fails here, not mid-call.
        """
        from .placement import check_placement, inventory

        check_placement(inventory(self) if self._offload_mode else self.placement_inventory(), self.execution_device)
        try:
            return self._run_stages(request, num_candidates, latents, output_type, callback, cached_references,
                                    candidate_batch_size)
        finally:
            self._free_models()

    def _run_stages(self, request: Request, num_candidates: int, latents: torch.Tensor | None, output_type: str,
                    callback: Callable | None, cached_references: CachedReferenceOptions | None,
                    candidate_batch_size: int | None) -> PipelineOutput:
        """The stages in order, timed: plan -> encode -> sample -> decode -> rank."""
        generator = request.make_generator(self.execution_device)
        timings: dict[str, float] = {}
        with _timed(timings, "plan"):
            plans = self.plan(request, num_candidates, generator)
        with _timed(timings, "encode"):
            encoded = self.encode_candidates(request, plans)
        groups = self.candidate_batches(encoded, candidate_batch_size)
        with _timed(timings, "denoise"):
            results = [self.sample(request, encoded.batch(group), generator=generator,
                                   latents=_repeat(latents, len(group)), callback=callback,
                                   cached_references=cached_references) for group in groups]
        with _timed(timings, "decode"):
            images = self.decode(request, groups, results, output_type)
        out = self.rank(request, images, plans, output_type, timings)
        out.encoder_calls, out.candidate_batches = encoded.encoder_calls, [list(g) for g in groups]
        out.batches = [BatchRecord(list(g), r.trace, r.reference_passes, r.attention) for g, r in zip(groups, results)]
        out.trace = out.batches[0].trace
        self.last_encoder_calls, self.last_candidate_batches = out.encoder_calls, out.candidate_batches
        return out

    # ------------------------------------------------------------------ the stages
    def plan(self, request: Request, num_candidates: int, generator: torch.Generator | None) -> list[Plan | None]:
        """Stage 1: ``num_candidates`` plans from the planner, or ``[None] * num_candidates`` without one.

        Raises :class:`RequestError` when the planner returns no plan.
        """
        if self.planner is None:
            return [None] * num_candidates
        plans = list(self.planner.plan(request, num_candidates, generator))
        if not plans:
            raise RequestError(f"Planner {type(self.planner).__name__} returned no plan; it must return at least one.")
        return plans

    @serialised
    def encode_candidates(self, request: Request, plans: Sequence[Plan | None]) -> "EncodedCandidates":
        """Stage 2: condition sets (batch ``num_images_per_prompt``) per plan, and for the negative prompt.

        Encoders whose output does not depend on the plan run once for all candidates (see
        :mod:`smg_sdk.candidates`), through :attr:`encoding_cache` when it is on; aggregators
        run per candidate (:meth:`_aggregate`).
        """
        effective = [_with_plan_prompt(request, plan) for plan in plans]
        needs_negative = request.negative_prompt is not None and request.true_cfg_scale > 1
        negative_request = request.negative() if needs_negative else None
        encoded, calls = encode_shared(
            self.encoders, self.backend, effective + ([negative_request] if negative_request is not None else []),
            self.encoding_cache,
        )
        rows = request.num_images_per_prompt
        positives = [self._aggregate(c, plan, req, rows) for c, plan, req in zip(encoded, plans, effective)]
        negatives = None
        if negative_request is not None:
            shared = encoded[-1]
            negatives = [
                self._aggregate(ConditionSet(list(shared.streams), shared.pooled, dict(shared.meta)), plan,
                                negative_request, rows)
                for plan in plans
            ]
        return EncodedCandidates(positives, negatives, calls)

    @staticmethod
    def candidate_batches(encoded: "EncodedCandidates", max_batch: int | None) -> list[list[int]]:
        """Candidate indices of each sampler call: stackable runs of at most ``max_batch`` (None = no limit)."""
        groups = batch_groups(encoded.positives, max_batch)
        if encoded.negatives is not None:  # a batch must be stackable on both sides
            groups = [sub for g in groups for sub in _split_stackable(g, encoded.negatives)]
        return groups

    def sample(
        self,
        request: Request,
        batch: tuple[ConditionSet, ConditionSet | None],
        *,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
        callback: Callable | None = None,
        cached_references: CachedReferenceOptions | None = None,
    ) -> SampleResult:
        """Stage 3: one sampler call for a stacked batch ``(positive, negative)`` of candidates.

        The attention passes (rules, stream independence, schedule weights) are built here in
        core code (:func:`smg_sdk.sampling.prepare_sampling`); the backend runs the call.
        ``latents`` are the whole batch's starting packed latents, or None to draw them from ``generator``.
        """
        positive, negative = batch
        call = prepare_sampling(
            self.backend, positive, height=request.height, width=request.width,
            num_inference_steps=request.num_inference_steps, rules=self.rules, request=request,
            negative_conditions=negative, true_cfg_scale=request.true_cfg_scale,
            guidance_scale=request.guidance_scale, schedule=self.schedule, generator=generator, latents=latents,
            callback=callback, progress=self._progress, cached=cached_references,
        )
        return self.backend.sample(call)

    def decode(self, request: Request, groups: list[list[int]], results: list[SampleResult], output_type: str) -> Any:
        """Stage 4: every batch's latents decoded, regrouped in candidate order (a list or an array/tensor)."""
        rows = request.num_images_per_prompt
        images: list[Any] = [None] * sum(len(g) for g in groups)
        for group, result in zip(groups, results):
            decoded = self.backend.decode(result.latents, request.height, request.width, output_type)
            for j, i in enumerate(group):
                images[i] = decoded[j * rows : (j + 1) * rows]
        return _flatten(images, output_type)

    def rank(self, request: Request, images: Any, plans: list[Plan | None], output_type: str,
             timings: dict[str, float]) -> PipelineOutput:
        """Stage 5: with a verifier, score every image and order images and plans best first."""
        used_plans = [plan for plan in plans if plan is not None for _ in range(request.num_images_per_prompt)]
        if self.verifier is None or output_type == "latent":
            return PipelineOutput(images=images, plans=used_plans, timings=timings)
        with _timed(timings, "verify"):
            scores = self._verify(images, output_type, request, used_plans)
        ranking = sorted(range(len(scores)), key=lambda i: -scores[i])
        candidates = list(images) if output_type == "pil" else images
        best = [images[i] for i in ranking] if output_type == "pil" else images[ranking]
        return PipelineOutput(
            images=best, plans=[used_plans[i] for i in ranking] if used_plans else [],
            scores=[scores[i] for i in ranking], candidates=candidates, timings=timings, ranking=ranking,
        )

    def _verify(self, flat: Any, output_type: str, request: Request, plans: list[Plan]) -> list[float]:
        """One verifier score per image; ``"np"``/``"pt"`` outputs are scored as the PIL images they decode to."""
        images = flat if output_type == "pil" else _to_pil(flat)
        scores = [float(s) for s in self.verifier.score(images, request, plans or None)]
        if len(scores) != len(images):
            raise RequestError(
                f"Verifier {type(self.verifier).__name__} returned {len(scores)} scores for {len(images)} images; "
                "it must return one score per image."
            )
        return scores


@dataclasses.dataclass
class EncodedCandidates:
    """The encode stage's result: one condition set per candidate (and per candidate for the negative prompt).

    ``encoder_calls`` counts the calls each encoder made (``"<i>:<class>"`` -> count). It
    unpacks as ``positives, negatives``.
    """

    positives: list[ConditionSet]
    negatives: list[ConditionSet] | None
    encoder_calls: dict[str, int]

    def __iter__(self):
        return iter((self.positives, self.negatives))

    def batch(self, group: Sequence[int]) -> tuple[ConditionSet, ConditionSet | None]:
        """The candidates ``group`` stacked along the batch axis, positive and negative."""
        negative = stack([self.negatives[i] for i in group]) if self.negatives is not None else None
        return stack([self.positives[i] for i in group]), negative


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str):
    """Add the block's wall time (seconds) to ``timings[key]``."""
    clock = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - clock


def _with_plan_prompt(request: Request, plan: Plan | None) -> Request:
    """``request`` with the plan's rewritten prompt, when the plan has one."""
    return dataclasses.replace(request, prompt=plan.prompt) if plan is not None and plan.prompt else request


def _repeat(latents: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """One candidate's starting latents repeated for ``times`` candidates (None stays None)."""
    return None if latents is None else latents.repeat(times, *([1] * (latents.ndim - 1)))


def _check_image_count(request: Request, num_candidates: int) -> None:
    if num_candidates * request.num_images_per_prompt > MAX_BATCH:
        raise RequestError(
            f"num_candidates x num_images_per_prompt = {num_candidates * request.num_images_per_prompt} images; "
            f"at most {MAX_BATCH} per call are supported."
        )

def _accelerator(device: str | torch.device | None) -> torch.device:
    """``device``, or the current accelerator (CUDA, MPS, XPU...) when None; PlacementError without one."""
    if device is not None:
        from .placement import parse_device

        return parse_device(device)
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if accelerator is None:
        raise PlacementError("No accelerator found to offload to; pass the device explicitly (e.g. device='cuda').")
    return torch.device(accelerator)


def _split_stackable(group: list[int], sets: Sequence[ConditionSet]) -> list[list[int]]:
    """``group`` split so that each part is also stackable in ``sets`` (order kept)."""
    parts = batch_groups([sets[i] for i in group])
    return [[group[j] for j in part] for part in parts]


def _to_pil(images: Any) -> list[Image.Image]:
    """``"np"`` ``(N, H, W, 3)`` or ``"pt"`` ``(N, 3, H, W)`` images in [0, 1] as PIL images."""
    from diffusers.image_processor import VaeImageProcessor

    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    return VaeImageProcessor.numpy_to_pil(images)


def _flatten(chunks: list[Any], output_type: str):
    if output_type == "pil":
        return [image for chunk in chunks for image in chunk]
    if output_type == "np":
        import numpy as np

        return np.concatenate(chunks, axis=0)
    return torch.cat(chunks, dim=0)
