"""The attention pass of one condition set: built in core, handed to the backend.

Everything that gives :class:`~smg_sdk.interfaces.AttentionRule` and
:class:`~smg_sdk.interfaces.DenoisingSchedule` their meaning lives here, independent of the
backend: the token layout, the independence of streams, the rules' mask, which query tokens
each stream adapter applies to, and the schedule's per-step stream weights. A backend only
runs the resulting :class:`~smg_sdk.attention.blocks.AttentionPlan` (attention by group
blocks, see :mod:`smg_sdk.attention.blocks`) and routes the adapters to the query tokens given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from ..conditions import ConditionSet
from .blocks import AttentionPlan
from .masks import JointAttentionMask, JointLayout, isolate_independent_streams

if TYPE_CHECKING:  # pragma: no cover
    from ..interfaces import AttentionRule, DenoisingSchedule
    from ..types import Request


@dataclass
class AttentionPass:
    """One condition set's joint attention, fixed for a whole sampling run.

    - ``conditions``: the streams (batch ``B``), raw streams excluded by the backend's check.
    - ``layout``: where each stream's tokens sit among queries and keys.
    - ``mask``: stream independence plus every rule, before any schedule weight.
    - ``adapter_queries``: per stream adapter, a ``(Q,)`` bool mask of the query tokens it
      applies to (the OR of its streams' tokens; text and concat streams only, since cached
      streams run in a pass of their own).

    :meth:`plan_at` compiles each distinct set of step weights once and keeps it, so a
    generation builds its attention structure once, not every step.
    """

    conditions: ConditionSet
    layout: JointLayout
    mask: JointAttentionMask
    adapter_queries: dict[str, torch.Tensor]
    _plans: dict[tuple, AttentionPlan] = field(default_factory=dict, init=False, repr=False, compare=False)

    def mask_at(self, weights: dict[str, float]) -> JointAttentionMask:
        """The mask of one step: the pass's mask with the schedule's ``weights`` applied (a copy if any is not 1)."""
        if all(w == 1 for w in weights.values()):
            return self.mask
        mask = self.mask.copy()
        mask.apply_stream_weights(weights)
        return mask

    def plan_at(self, weights: dict[str, float]) -> AttentionPlan:
        """The attention calls of one step (the mask with ``weights``), compiled on first use of these weights.

        Raises :class:`~smg_sdk.errors.AttentionRuleError` for an invalid weight or when a
        query may attend to no key. The plan stays valid while ``mask`` is not edited.
        """
        key = weights_key(weights)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self.mask_at(weights).plan()
        return plan

    @property
    def cached_streams(self) -> list:
        """Reference streams run once in a pass of their own (``mode="cached"``)."""
        return [s for s in self.conditions.references if s.mode == "cached"]

    @property
    def concat_streams(self) -> list:
        """Reference streams appended to the image sequence (``mode="concat"``)."""
        return [s for s in self.conditions.references if s.mode == "concat"]


def weights_key(weights: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable key of one step's stream weights, in their order (the order edits apply in)."""
    return tuple((name, float(w)) for name, w in weights.items())


def build_attention_pass(
    conditions: ConditionSet,
    image_tokens: int,
    rules: Sequence["AttentionRule"] = (),
    request: "Request | None" = None,
) -> AttentionPass:
    """Lay out ``conditions`` around ``image_tokens`` target tokens and apply independence and ``rules``.

    Raises :class:`~smg_sdk.errors.AttentionRuleError` when a rule addresses an unknown group
    or the layout is invalid (two groups with one name).
    """
    batch = int(conditions.streams[0].tokens.shape[0]) if conditions.streams else 1
    layout = JointLayout.build(conditions, image_tokens)
    mask = JointAttentionMask(layout, batch)
    isolate_independent_streams(mask, conditions)
    for rule in rules:
        rule.apply(mask, conditions, request)
    attention = AttentionPass(conditions, layout, mask, {})
    # One token mask per adapter: streams sharing an adapter (several references with one
    # LoRA) are OR-ed, since each routed mask multiplies the adapter's output.
    for stream in conditions.text + attention.concat_streams:
        if stream.adapter is not None:
            tokens = layout.query_mask(stream.name)
            known = attention.adapter_queries.get(stream.adapter)
            attention.adapter_queries[stream.adapter] = tokens if known is None else known | tokens
    return attention


def step_weights(
    schedule: "DenoisingSchedule | None", step: int, num_steps: int, conditions: ConditionSet
) -> dict[str, float]:
    """The schedule's weight per stream at ``step`` (0-based) of ``num_steps``; {} without a schedule."""
    return schedule.stream_weights(step, num_steps, conditions) if schedule is not None else {}


def trace_entry(conditions: ConditionSet, weights: dict[str, float]) -> dict[str, float]:
    """One step's line of the trace: every non-raw stream with its weight (1 when left out)."""
    return {s.name: float(weights.get(s.name, 1.0)) for s in conditions if s.side != "raw"}
