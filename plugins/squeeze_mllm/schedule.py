"""Multi-stage denoising: composition first, identity last.

Squeeze-MLLM's observation: early steps fix the layout and semantics, late steps fix detail.
So the MLLM stream alone conditions the early steps (references hidden), both condition the
middle, and the late steps emphasise the VAE identity references by lowering the MLLM
stream's weight. A weight of 0 hides a stream from every other token for that step; a
weight ``w`` adds ``log w`` to its attention logits (see DenoisingSchedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from smg_sdk import ConditionSet, DenoisingSchedule, ScheduleError

from .streams import OUT_STREAM


@dataclass(frozen=True)
class Phase:
    name: str
    semantic_weight: float
    reference_weight: float


class MultiStageSchedule(DenoisingSchedule):
    """Three phases over the step fraction ``f = step / num_steps``.

    ``[0, semantic_until)``: semantics only; ``[semantic_until, identity_from)``: both;
    ``[identity_from, 1]``: identity emphasis. ``semantic_streams`` names the MLLM stream(s);
    every reference-side stream counts as identity.
    """

    needs_streams = needs_meta = reads_meta = ()  # streams absent from a request get no weight

    def __init__(
        self,
        semantic_until: float = 0.3,
        identity_from: float = 0.7,
        identity_semantic_weight: float = 0.5,
        identity_reference_weight: float = 1.0,
        semantic_streams: tuple[str, ...] | list[str] = (OUT_STREAM,),
    ):
        if not (0.0 <= semantic_until <= identity_from <= 1.0):
            raise ScheduleError(
                f"Phase boundaries must satisfy 0 <= semantic_until <= identity_from <= 1; got "
                f"{semantic_until} and {identity_from}."
            )
        for name, w in (("identity_semantic_weight", identity_semantic_weight),
                        ("identity_reference_weight", identity_reference_weight)):
            if not isinstance(w, (int, float)) or w < 0 or w != w or w == float("inf"):
                raise ScheduleError(f"{name} must be a finite number >= 0, got {w!r}.")
        self.semantic_until = float(semantic_until)
        self.identity_from = float(identity_from)
        self.phases = (
            Phase("semantic", 1.0, 0.0),
            Phase("joint", 1.0, 1.0),
            Phase("identity", float(identity_semantic_weight), float(identity_reference_weight)),
        )
        self.semantic_streams = tuple(semantic_streams)

    def phase(self, step: int, num_steps: int) -> Phase:
        if num_steps < 1 or not (0 <= step < num_steps):
            raise ScheduleError(f"step {step} is outside 0..{num_steps - 1}.")
        fraction = step / num_steps
        if fraction < self.semantic_until:
            return self.phases[0]
        if fraction < self.identity_from:
            return self.phases[1]
        return self.phases[2]

    def stream_weights(self, step: int, num_steps: int, conditions: ConditionSet) -> dict[str, float]:
        phase = self.phase(step, num_steps)
        weights = {s.name: phase.reference_weight for s in conditions.references}
        weights.update({name: phase.semantic_weight for name in self.semantic_streams if name in conditions})
        return weights
