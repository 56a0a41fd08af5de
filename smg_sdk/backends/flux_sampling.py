"""The FLUX flow-matching sampler with condition streams.

With only a prompt stream and no rules it performs exactly FluxPipeline's computation (the
peer test checks this). Condition streams add:

- text-side streams, concatenated to the text sequence;
- *concat* reference streams, appended to the image sequence (same timestep);
- *cached* reference streams, run in a pass of their own that records each attention
  layer's post-RoPE keys/values, which every denoising pass then appends to its keys;
- a joint additive mask from the attention rules, the streams' independence, and the
  schedule's per-step stream weights;
- per-stream LoRA routing (see :mod:`smg_sdk.lora`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attention.masks import JointAttentionMask, JointLayout, isolate_independent_streams
from ..attention.processor import KV, AttentionContext
from ..conditions import ConditionSet, ConditionStream
from ..errors import BackendError, RequestError
from ..latents import pack_latents
from ..lora import activate_adapters, route_adapter
from ..positions import grid_ids

if TYPE_CHECKING:  # pragma: no cover
    from ..interfaces import AttentionRule, DenoisingSchedule
    from ..types import Request
    from .flux import FluxBackend


@dataclass
class CachedReferenceOptions:
    """How cached reference streams are computed.

    The default is the method: one pass at t = 0 before sampling. The other settings exist
    to check the mechanism: ``timestep="step"`` with ``recompute_every_step=True`` computes
    the reference at each step's own timestep, which must equal concat mode with the
    reference isolated.
    """

    timestep: Literal["zero", "step"] = "zero"
    recompute_every_step: bool = False

    def __post_init__(self) -> None:
        if self.timestep not in ("zero", "step"):
            raise RequestError(f"CachedReferenceOptions.timestep must be 'zero' or 'step', not {self.timestep!r}.")
        if not isinstance(self.recompute_every_step, bool):
            raise RequestError(
                f"CachedReferenceOptions.recompute_every_step must be True or False, not {self.recompute_every_step!r}."
            )


@dataclass
class DenoiseResult:
    """Final packed latents, the per-step stream weights, and how many reference passes ran."""

    latents: torch.Tensor
    trace: list[dict[str, float]] = field(default_factory=list)
    reference_passes: int = 0


@dataclass
class _PassInputs:
    """Everything about one condition set that stays fixed across steps."""

    conditions: ConditionSet
    text_tokens: torch.Tensor
    text_ids: torch.Tensor
    extra_tokens: list[ConditionStream]
    cached: list[ConditionStream]
    layout: JointLayout
    base_mask: JointAttentionMask
    routed: list[tuple[str, torch.Tensor]]


def _check_streams(backend: "FluxBackend", conditions: ConditionSet) -> int:
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


def _prepare(
    backend: "FluxBackend",
    conditions: ConditionSet,
    image_tokens: int,
    rules: Sequence["AttentionRule"],
    request: "Request | None",
) -> _PassInputs:
    batch = _check_streams(backend, conditions)
    device, dtype = backend.device, backend.dtype
    text = conditions.text
    text_tokens = torch.cat([s.tokens for s in text], dim=1).to(device, dtype)
    text_ids = torch.cat([s.position_ids for s in text], dim=0).to(device, dtype)
    extra = [s for s in conditions.references if s.mode == "concat"]
    cached = [s for s in conditions.references if s.mode == "cached"]
    layout = JointLayout.build(conditions, image_tokens)
    mask = JointAttentionMask(layout, batch)
    isolate_independent_streams(mask, conditions)
    for rule in rules:
        rule.apply(mask, conditions, request)
    # One token mask per adapter: streams sharing an adapter (several references with one
    # LoRA) must be OR-ed, since each routed mask multiplies the adapter's output.
    by_adapter: dict[str, torch.Tensor] = {}
    for s in text + extra:
        if s.adapter is not None:
            stream_mask = layout.query_mask(s.name)
            by_adapter[s.adapter] = by_adapter[s.adapter] | stream_mask if s.adapter in by_adapter else stream_mask
    routed = [(name, m.to(device, dtype).expand(batch, -1)) for name, m in by_adapter.items()]
    return _PassInputs(conditions, text_tokens, text_ids, extra, cached, layout, mask, routed)


def _record(
    backend: "FluxBackend",
    stream: ConditionStream,
    timestep: torch.Tensor,
    guidance: torch.Tensor | None,
    pooled: torch.Tensor,
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
            hidden_states=stream.tokens.to(backend.device, backend.dtype),
            encoder_hidden_states=torch.zeros(batch, 0, backend.text_width, device=backend.device, dtype=backend.dtype),
            pooled_projections=pooled,
            timestep=timestep,
            guidance=guidance,
            txt_ids=torch.zeros(0, 3, device=backend.device, dtype=backend.dtype),
            img_ids=stream.position_ids.to(backend.device, backend.dtype),
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
    img_ids: torch.Tensor,
    timestep: torch.Tensor,
    guidance: torch.Tensor | None,
    weights: dict[str, float],
    cache: dict[str, dict[str, KV]],
) -> torch.Tensor:
    """One transformer evaluation on the target latents with all streams; returns the image velocity."""
    mask = inputs.base_mask
    if any(w != 1 for w in weights.values()):
        mask = mask.copy()
        mask.apply_stream_weights(weights)
    additive = mask.additive(dtype=backend.dtype, device=backend.device)
    hidden = torch.cat([latents] + [s.tokens.to(latents) for s in inputs.extra_tokens], dim=1)
    ids = torch.cat([img_ids] + [s.position_ids.to(img_ids) for s in inputs.extra_tokens], dim=0)
    needs_ctx = additive is not None or inputs.cached
    kwargs = {"smg": AttentionContext(mask=additive, cached=[cache[s.name] for s in inputs.cached])} if needs_ctx else None
    transformer = backend.transformer
    with ExitStack() as stack:
        if inputs.routed:
            adapters = backend.transformer_adapter_weights()
            adapters.update({name: 1.0 for name, _ in inputs.routed})
            activate_adapters(transformer, adapters)
            stack.callback(backend.reset_adapters)
            for name, token_mask in inputs.routed:
                stack.enter_context(route_adapter(transformer, name, token_mask, inputs.layout.text_length))
        out = transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=guidance,
            pooled_projections=inputs.conditions.pooled.to(latents),
            encoder_hidden_states=inputs.text_tokens,
            txt_ids=inputs.text_ids,
            img_ids=ids,
            joint_attention_kwargs=kwargs,
            return_dict=False,
        )[0]
    return out[:, : latents.shape[1]]


def prepare_timesteps(backend: "FluxBackend", scheduler, num_inference_steps: int, image_seq_len: int, sigmas=None):
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
    timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, backend.device, sigmas=sigmas, mu=mu)
    return timesteps


@torch.no_grad()
def denoise(
    backend: "FluxBackend",
    conditions: ConditionSet,
    *,
    height: int,
    width: int,
    num_inference_steps: int,
    guidance_scale: float = 3.5,
    generator: torch.Generator | list[torch.Generator] | None = None,
    rules: Sequence["AttentionRule"] = (),
    schedule: "DenoisingSchedule | None" = None,
    request: "Request | None" = None,
    negative_conditions: ConditionSet | None = None,
    true_cfg_scale: float = 1.0,
    latents: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor, dict[str, torch.Tensor]], dict[str, Any] | None] | None = None,
    progress: bool = True,
    cached: CachedReferenceOptions | None = None,
) -> DenoiseResult:
    """Sample packed latents for ``conditions`` (batch B) at ``height x width``."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    cached = cached or CachedReferenceOptions()
    if height % backend.size_multiple or width % backend.size_multiple:
        raise BackendError(f"height and width must be multiples of {backend.size_multiple}, got {height}x{width}.")
    batch = _check_streams(backend, conditions)
    device, dtype = backend.device, backend.dtype
    rows, cols = backend.token_grid(height, width)
    if latents is None:
        shape = (batch, backend.latent_channels, rows * 2, cols * 2)
        latents = pack_latents(randn_tensor(shape, generator=generator, device=device, dtype=dtype))
    img_ids = grid_ids(rows, cols).to(device, dtype)

    positive = _prepare(backend, conditions, latents.shape[1], rules, request)
    do_cfg = negative_conditions is not None and true_cfg_scale > 1
    negative = _prepare(backend, negative_conditions, latents.shape[1], rules, request) if do_cfg else None
    passes = [p for p in (positive, negative) if p is not None]

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(backend.scheduler.config)
    custom = schedule.sigmas(num_inference_steps) if schedule is not None else None
    timesteps = prepare_timesteps(backend, scheduler, num_inference_steps, latents.shape[1], custom)
    guidance = None
    if backend.transformer.config.guidance_embeds:
        guidance = torch.full([1], guidance_scale, device=device, dtype=torch.float32).expand(batch)

    caches: list[dict[str, dict[str, KV]]] = [{} for _ in passes]
    reference_passes = 0

    def record_all(t_value: torch.Tensor) -> None:
        nonlocal reference_passes
        for p, cache in zip(passes, caches):
            for s in p.cached:
                cache[s.name] = _record(backend, s, t_value, guidance, p.conditions.pooled.to(device, dtype))
                reference_passes += 1

    zero = torch.zeros(batch, device=device, dtype=dtype)
    if any(p.cached for p in passes) and cached.timestep == "zero" and not cached.recompute_every_step:
        record_all(zero)

    scheduler.set_begin_index(0)
    trace: list[dict[str, float]] = []
    names = [s.name for s in conditions if s.side != "raw"]
    for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
        timestep = t.expand(batch).to(dtype) / 1000
        if cached.recompute_every_step:
            record_all(timestep if cached.timestep == "step" else zero)
        weights = schedule.stream_weights(i, len(timesteps), conditions) if schedule is not None else {}
        trace.append({name: float(weights.get(name, 1.0)) for name in names})
        noise_pred = _forward(backend, positive, latents, img_ids, timestep, guidance, weights, caches[0])
        if negative is not None:
            neg_pred = _forward(backend, negative, latents, img_ids, timestep, guidance, weights, caches[1])
            noise_pred = neg_pred + true_cfg_scale * (noise_pred - neg_pred)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if callback is not None:
            changes = callback(i, t, {"latents": latents}) or {}
            latents = changes.get("latents", latents)
    return DenoiseResult(latents=latents, trace=trace, reference_passes=reference_passes)


def predict_velocity(
    backend: "FluxBackend",
    conditions: ConditionSet,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    height: int,
    width: int,
    guidance_scale: float = 1.0,
    rules: Sequence["AttentionRule"] = (),
    request: "Request | None" = None,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """The transformer's velocity for noisy packed ``latents`` at noise levels ``sigmas`` (B,).

    Differentiable (used by training): cached reference streams are recorded at t = 0 with
    gradients, so their adapters train through the cache exactly as they run at inference.
    """
    batch = _check_streams(backend, conditions)
    rows, cols = backend.token_grid(height, width)
    inputs = _prepare(backend, conditions, latents.shape[1], rules, request)
    guidance = None
    if backend.transformer.config.guidance_embeds:
        guidance = torch.full([batch], guidance_scale, device=backend.device, dtype=torch.float32)
    zero = torch.zeros(batch, device=backend.device, dtype=backend.dtype)
    pooled = conditions.pooled.to(backend.device, backend.dtype)
    cache = {s.name: _record(backend, s, zero, guidance, pooled) for s in inputs.cached}
    img_ids = grid_ids(rows, cols).to(backend.device, backend.dtype)
    timestep = sigmas.to(backend.device, backend.dtype)
    return _forward(backend, inputs, latents, img_ids, timestep, guidance, weights or {}, cache)
