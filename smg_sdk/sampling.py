"""The typed sampling call between a pipeline and its backend.

The pipeline (or a trainer) builds a :class:`SamplingCall` in core code: the attention passes
of the positive and negative condition sets (:mod:`smg_sdk.attention.passes`), the
schedule, and the sampler settings; the backend runs it (``Backend.sample``) and returns a
:class:`SampleResult`. Nothing here knows which diffusion model runs the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import torch

from .attention.passes import AttentionPass, build_attention_pass, step_weights, trace_entry
from .conditions import ConditionSet
from .errors import BackendError, RequestError

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Backend
    from .interfaces import AttentionRule, DenoisingSchedule
    from .types import Request

StepCallback = Callable[[int, torch.Tensor, dict[str, torch.Tensor]], "dict[str, Any] | None"]
"""``callback(step, timestep, {"latents": latents})`` after each step; may return new latents."""


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
class SampleResult:
    """Final packed latents ``(B, tokens, channels)``, the per-step stream weights, and how many reference passes ran.

    ``attention``: one line per pass and distinct step weights saying how the backend ran
    the joint attention (e.g. the FLUX backend's attention calls by group blocks, and any
    dense-mask fallback with its reason); empty when the backend does not report it.
    """

    latents: torch.Tensor
    trace: list[dict[str, float]] = field(default_factory=list)
    reference_passes: int = 0
    attention: list[str] = field(default_factory=list)


@dataclass
class SamplingCall:
    """One run of the sampler over a batch of ``B`` condition sets.

    ``height``/``width`` are in pixels (multiples of the backend's ``size_multiple``);
    ``guidance_scale`` is the distilled guidance embedding's value; ``true_cfg_scale > 1``
    with a ``negative`` pass runs true classifier-free guidance; ``latents`` are starting
    packed latents ``(B, tokens, channels)`` or None to draw them from ``generator``.
    """

    positive: AttentionPass
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float = 3.5
    negative: AttentionPass | None = None
    true_cfg_scale: float = 1.0
    schedule: "DenoisingSchedule | None" = None
    generator: torch.Generator | list[torch.Generator] | None = None
    latents: torch.Tensor | None = None
    callback: StepCallback | None = None
    progress: bool = True
    cached: CachedReferenceOptions = field(default_factory=CachedReferenceOptions)

    def sigmas(self) -> list[float] | None:
        """The schedule's custom sigmas (before the backend's resolution shift), or None for the default."""
        return self.schedule.sigmas(self.num_inference_steps) if self.schedule is not None else None

    def weights_at(self, step: int, num_steps: int) -> dict[str, float]:
        """The schedule's stream weights at ``step`` of ``num_steps`` (both passes use the positive set's)."""
        return step_weights(self.schedule, step, num_steps, self.positive.conditions)

    def trace_entry(self, weights: dict[str, float]) -> dict[str, float]:
        return trace_entry(self.positive.conditions, weights)


def prepare_sampling(
    backend: "Backend",
    conditions: ConditionSet,
    *,
    height: int,
    width: int,
    num_inference_steps: int,
    rules: Sequence["AttentionRule"] = (),
    request: "Request | None" = None,
    negative_conditions: ConditionSet | None = None,
    true_cfg_scale: float = 1.0,
    **settings: Any,
) -> SamplingCall:
    """Check ``conditions`` with the backend, build the attention passes, and return the call.

    ``settings`` are the remaining :class:`SamplingCall` fields (``guidance_scale``,
    ``schedule``, ``generator``, ``latents``, ``callback``, ``progress``, ``cached``).
    Raises :class:`~smg_sdk.errors.BackendError` (from the backend's check) for streams the
    backend cannot use, and :class:`~smg_sdk.errors.AttentionRuleError` for a bad rule.
    """
    if height % backend.size_multiple or width % backend.size_multiple:
        raise BackendError(f"height and width must be multiples of {backend.size_multiple}, got {height}x{width}.")
    rows, cols = backend.token_grid(height, width)
    backend.check_conditions(conditions)
    positive = build_attention_pass(conditions, rows * cols, rules, request)
    negative = None
    if negative_conditions is not None and true_cfg_scale > 1:
        backend.check_conditions(negative_conditions)
        negative = build_attention_pass(negative_conditions, rows * cols, rules, request)
    if settings.get("cached") is None:
        settings.pop("cached", None)
    return SamplingCall(positive, height, width, num_inference_steps, negative=negative,
                        true_cfg_scale=true_cfg_scale, **settings)

