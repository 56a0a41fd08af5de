"""The FLUX flow-matching sampler: runs a core :class:`~smg_sdk.sampling.SamplingCall`.

With only a prompt stream and no rules it performs exactly FluxPipeline's computation (the
peer test checks this). The call's attention passes (built in core, see
:mod:`smg_sdk.attention.passes`) bring:

- text-side streams, concatenated to the text sequence;
- *concat* reference streams, appended to the image sequence (same timestep);
- *cached* reference streams, run in a pass of their own that records each attention
  layer's post-RoPE keys/values, which every denoising pass then appends to its keys;
- the joint attention structure (streams' independence and the rules) with the schedule's
  per-step stream weights, compiled once per distinct weights into an attention plan (calls
  by group blocks, :mod:`smg_sdk.attention.blocks`) that the processor runs;
- per-stream LoRA routing (see :mod:`.lora`) to the query tokens each adapter applies to.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ...attention.blocks import AttentionPlan
from ...attention.passes import AttentionPass, weights_key
from ...conditions import ConditionSet, ConditionStream
from ...errors import BackendError
from ...sampling import SampleResult, SamplingCall
from .latents import pack_latents
from .lora import activate_adapters, route_adapter
from .positions import grid_ids, ids_for_transformer
from .processor import KV, AttentionContext

if TYPE_CHECKING:  # pragma: no cover
    from .backend import FluxBackend


@dataclass(frozen=True)
class _Placement:
    """The transformer's device and dtype, resolved once per sampling call.

    ``backend.device``/``backend.dtype`` ask the model, which walks its parameters (and, for
    the dtype, its modules); at FLUX.1-dev shape with a LoRA that is tens of ms a call.
    """

    device: torch.device
    dtype: torch.dtype

    @classmethod
    def of(cls, backend: "FluxBackend") -> "_Placement":
        return cls(backend.device, backend.dtype)


@dataclass
class _PassInputs:
    """The FLUX tensors of one attention pass that stay fixed across steps.

    ``adapters``: the adapter weights active while this pass runs (global ones plus its
    routed stream adapters), None when nothing is routed. ``plans``: the pass's attention
    plan per distinct step weights, on the transformer's device and dtype (None: plain).
    """

    attention: AttentionPass
    text_tokens: torch.Tensor
    text_ids: torch.Tensor
    routed: list[tuple[str, torch.Tensor]]
    adapters: dict[str, float] | None
    concat_tokens: list[torch.Tensor]
    ids: torch.Tensor
    placement: _Placement
    plans: dict[tuple, AttentionPlan | None] = field(default_factory=dict)

    @property
    def conditions(self) -> ConditionSet:
        return self.attention.conditions

    def plan_at(self, weights: dict[str, float]) -> AttentionPlan | None:
        """The step's attention plan on the transformer's device (None when plain attention)."""
        key = weights_key(weights)
        if key not in self.plans:
            plan = self.attention.plan_at(weights)
            self.plans[key] = None if plan.is_trivial else plan.to(self.placement.device, self.placement.dtype)
        return self.plans[key]


class _Routing:
    """Installs the stream adapters of the pass that runs, switching only when the pass changes.

    Activating adapters and hooking every routed LoRA layer walks the model; with one pass
    per step (no true CFG) it now happens once per sampling call instead of every step.
    """

    def __init__(self, backend: "FluxBackend"):
        self.backend = backend
        self.stack = ExitStack()
        self.current: _PassInputs | None = None

    def enter(self, inputs: _PassInputs) -> None:
        if self.current is inputs:
            return
        self.leave()
        if inputs.adapters is not None:
            transformer = self.backend.transformer
            activate_adapters(transformer, inputs.adapters)
            self.stack.callback(self.backend.reset_adapters)
            for name, token_mask in inputs.routed:
                self.stack.enter_context(route_adapter(transformer, name, token_mask, inputs.attention.layout.text_length))
        self.current = inputs

    def leave(self) -> None:
        """Back to the resting adapters (every global adapter on, stream adapters off, no hooks)."""
        self.current = None
        stack, self.stack = self.stack, ExitStack()
        stack.close()

    def __enter__(self) -> "_Routing":
        return self

    def __exit__(self, *exc) -> None:
        self.leave()


def check_streams(backend: "FluxBackend", conditions: ConditionSet) -> int:
    """The batch size of ``conditions``; raises BackendError for streams this FLUX cannot use."""
    raw = [s.name for s in conditions.by_side("raw")]
    if raw:
        raise BackendError(
            f"Streams {raw} are raw features; add an aggregator that turns them into text or reference streams."
        )
    if not conditions.text:
        raise BackendError("No text-side stream: add a text encoder (e.g. 'flux-text') to the pipeline.")
    if conditions.pooled is None:
        raise BackendError("FLUX needs a pooled text embedding; the pipeline's text encoder must provide one.")
    batch = {int(s.tokens.shape[0]) for s in conditions} | {int(conditions.pooled.shape[0])}
    if len(batch) != 1:
        raise BackendError(f"Condition streams disagree on batch size: {sorted(batch)}.")
    for s in conditions.text:
        if s.tokens.shape[-1] != backend.text_width:
            raise BackendError(
                f"Text stream {s.name!r} has width {s.tokens.shape[-1]}; this FLUX expects {backend.text_width}."
            )
    for s in conditions.references:
        if s.tokens.shape[-1] != backend.transformer.config.in_channels:
            raise BackendError(
                f"Reference stream {s.name!r} has width {s.tokens.shape[-1]}; packed latents of this FLUX have "
                f"{backend.transformer.config.in_channels}."
            )
    return batch.pop()


def _inputs(backend: "FluxBackend", attention: AttentionPass, img_ids: torch.Tensor, at: _Placement) -> _PassInputs:
    """Text tokens and ids in the transformer's dtype, the joint ids, and each adapter's query mask over the batch."""
    text = attention.conditions.text
    text_tokens = torch.cat([s.tokens for s in text], dim=1).to(at.device, at.dtype)
    text_ids = ids_for_transformer(torch.cat([s.position_ids for s in text], dim=0), at.device)
    batch = int(text_tokens.shape[0])
    routed = [(name, m.to(at.device, at.dtype).expand(batch, -1)) for name, m in attention.adapter_queries.items()]
    adapters = None
    if routed:
        adapters = backend.transformer_adapter_weights()
        adapters.update({name: 1.0 for name, _ in routed})
    extra = attention.concat_streams
    concat = [s.tokens.to(at.device, at.dtype) for s in extra]
    ids = torch.cat([img_ids] + [s.position_ids.to(img_ids) for s in extra], dim=0)
    return _PassInputs(attention, text_tokens, text_ids, routed, adapters, concat, ids, at)


def _record(
    backend: "FluxBackend",
    stream: ConditionStream,
    timestep: torch.Tensor,
    guidance: torch.Tensor | None,
    pooled: torch.Tensor,
    at: _Placement,
) -> dict[str, KV]:
    """Run ``stream`` alone through the transformer; return each layer's keys/values."""
    transformer = backend.transformer
    batch = stream.tokens.shape[0]
    ctx = AttentionContext(mode="record")
    adapters = backend.transformer_adapter_weights()
    if stream.adapter is not None:
        adapters[stream.adapter] = 1.0
    activate_adapters(transformer, adapters)
    try:
        transformer(
            hidden_states=stream.tokens.to(at.device, at.dtype),
            encoder_hidden_states=torch.zeros(batch, 0, backend.text_width, device=at.device, dtype=at.dtype),
            pooled_projections=pooled,
            timestep=timestep,
            guidance=guidance,
            txt_ids=torch.zeros(0, 3, device=at.device),
            img_ids=ids_for_transformer(stream.position_ids, at.device),
            joint_attention_kwargs={"smg": ctx},
            return_dict=False,
        )
    finally:
        backend.reset_adapters()
    return ctx.recorded


def _forward(
    backend: "FluxBackend",
    inputs: _PassInputs,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    guidance: torch.Tensor | None,
    weights: dict[str, float],
    cache: dict[str, dict[str, KV]],
    routing: _Routing,
) -> torch.Tensor:
    """One transformer evaluation on the target latents with all streams; returns the image velocity."""
    attention = inputs.attention
    plan = inputs.plan_at(weights)
    cached = attention.cached_streams
    hidden = torch.cat([latents] + [t.to(latents) for t in inputs.concat_tokens], dim=1)
    needs_ctx = plan is not None or cached
    kwargs = {"smg": AttentionContext(plan=plan, cached=[cache[s.name] for s in cached])} if needs_ctx else None
    routing.enter(inputs)
    out = backend.transformer(
        hidden_states=hidden,
        timestep=timestep,
        guidance=guidance,
        pooled_projections=inputs.conditions.pooled.to(latents),
        encoder_hidden_states=inputs.text_tokens,
        txt_ids=inputs.text_ids,
        img_ids=inputs.ids,
        joint_attention_kwargs=kwargs,
        return_dict=False,
    )[0]
    return out[:, : latents.shape[1]]


def prepare_timesteps(device: torch.device, scheduler, num_inference_steps: int, image_seq_len: int, sigmas=None):
    """FluxPipeline's timestep preparation: linear sigmas, shifted by image size."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps) if sigmas is None else sigmas
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    mu = calculate_shift(
        image_seq_len,
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
    return timesteps


def _guidance(backend: "FluxBackend", scale: float, batch: int, at: _Placement) -> torch.Tensor | None:
    """The distilled guidance embedding's input ``(B,)``, or None for a model without one."""
    if not backend.transformer.config.guidance_embeds:
        return None
    return torch.full([1], scale, device=at.device, dtype=torch.float32).expand(batch)


def _start_latents(backend: "FluxBackend", call: SamplingCall, batch: int, at: _Placement) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    if call.latents is not None:
        return call.latents
    rows, cols = backend.token_grid(call.height, call.width)
    shape = (batch, backend.latent_channels, rows * 2, cols * 2)
    return pack_latents(randn_tensor(shape, generator=call.generator, device=at.device, dtype=at.dtype))


class _ReferenceCache:
    """Keys/values of the cached reference streams, per pass, and how many reference passes ran."""

    def __init__(self, backend: "FluxBackend", passes: list[_PassInputs], guidance: torch.Tensor | None):
        self.backend, self.passes, self.guidance = backend, passes, guidance
        self.caches: list[dict[str, dict[str, KV]]] = [{} for _ in passes]
        self.reference_passes = 0

    def record(self, timestep: torch.Tensor) -> None:
        for p, cache in zip(self.passes, self.caches):
            at = p.placement
            for s in p.attention.cached_streams:
                pooled = p.conditions.pooled.to(at.device, at.dtype)
                cache[s.name] = _record(self.backend, s, timestep, self.guidance, pooled, at)
                self.reference_passes += 1


def _attention_notes(passes: list[_PassInputs]) -> list[str]:
    """How each pass's attention ran, per distinct step weights: ``"<pass> <weights>: <plan>"``."""
    notes = []
    for label, p in zip(("positive", "negative"), passes):
        for key, plan in p.plans.items():
            described = plan.describe() if plan is not None else "plain attention (no mask)"
            notes.append(f"{label} {dict(key)}: {described}")
    return notes


@torch.no_grad()
def sample(backend: "FluxBackend", call: SamplingCall) -> SampleResult:
    """Sample packed latents for ``call`` (batch B) at ``call.height x call.width``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    at = _Placement.of(backend)
    batch = check_streams(backend, call.positive.conditions)
    latents = _start_latents(backend, call, batch, at)
    rows, cols = backend.token_grid(call.height, call.width)
    img_ids = ids_for_transformer(grid_ids(rows, cols), at.device)
    passes = [_inputs(backend, p, img_ids, at) for p in (call.positive, call.negative) if p is not None]
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(backend.scheduler.config)
    timesteps = prepare_timesteps(at.device, scheduler, call.num_inference_steps, latents.shape[1], call.sigmas())
    cache = _ReferenceCache(backend, passes, _guidance(backend, call.guidance_scale, batch, at))
    zero = torch.zeros(batch, device=at.device, dtype=at.dtype)
    recompute = call.cached.recompute_every_step
    if any(p.attention.cached_streams for p in passes) and call.cached.timestep == "zero" and not recompute:
        cache.record(zero)
    scheduler.set_begin_index(0)
    trace: list[dict[str, float]] = []
    with _Routing(backend) as routing:
        for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not call.progress, leave=False)):
            timestep = t.expand(batch).to(at.dtype) / 1000
            if recompute:
                routing.leave()  # the reference passes set their own adapters
                cache.record(timestep if call.cached.timestep == "step" else zero)
            weights = call.weights_at(i, len(timesteps))
            trace.append(call.trace_entry(weights))
            preds = [_forward(backend, p, latents, timestep, cache.guidance, weights, c, routing)
                     for p, c in zip(passes, cache.caches)]
            noise_pred = preds[0] if len(preds) == 1 else preds[1] + call.true_cfg_scale * (preds[0] - preds[1])
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if call.callback is not None:
                routing.leave()  # the callback sees the resting adapters, as before
                changes = call.callback(i, t, {"latents": latents}) or {}
                latents = changes.get("latents", latents)
    return SampleResult(latents=latents, trace=trace, reference_passes=cache.reference_passes,
                        attention=_attention_notes(passes))


def predict_velocity(
    backend: "FluxBackend",
    attention: AttentionPass,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    height: int,
    width: int,
    guidance_scale: float = 1.0,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """The transformer's velocity for noisy packed ``latents`` at noise levels ``sigmas`` (B,).

    Differentiable (used by training): cached reference streams are recorded at t = 0 with
    gradients, so their adapters train through the cache exactly as they run at inference.
    """
    at = _Placement.of(backend)
    batch = check_streams(backend, attention.conditions)
    rows, cols = backend.token_grid(height, width)
    img_ids = ids_for_transformer(grid_ids(rows, cols), at.device)
    inputs = _inputs(backend, attention, img_ids, at)
    guidance = _guidance(backend, guidance_scale, batch, at)
    zero = torch.zeros(batch, device=at.device, dtype=at.dtype)
    pooled = attention.conditions.pooled.to(at.device, at.dtype)
    cache = {s.name: _record(backend, s, zero, guidance, pooled, at) for s in attention.cached_streams}
    timestep = sigmas.to(at.device, at.dtype)
    with _Routing(backend) as routing:
        return _forward(backend, inputs, latents, timestep, guidance, weights or {}, cache, routing)
