"""Condition streams: the one currency between encoders, aggregators, rules and the backend."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal

import torch

from .errors import ConditionError

Side = Literal["text", "reference", "raw"]
ReferenceMode = Literal["concat", "cached"]


@dataclass
class ConditionStream:
    """One named sequence of conditioning tokens and how the backend should use it.

    - ``tokens`` ``(B, L, D)``: in the backend's *input* space: ``D`` is the text width
      (``joint_attention_dim``) for ``side="text"`` and the packed-latent width
      (``in_channels``) for ``side="reference"``. ``side="raw"`` streams carry features an
      :class:`~smg_sdk.interfaces.Aggregator` must turn into one of the other two first.
    - ``position_ids`` ``(L, 3)``: FLUX's 3-axis RoPE ids.
    - ``subject``: 0-based index of the subject this stream belongs to, or None.
    - ``adapter``: name of a LoRA adapter that must be active for this stream's tokens only.
    - ``independent``: the stream attends only to itself, so its keys/values do not depend
      on the target and may be computed once (required for ``mode="cached"``).
    - ``mode``: for reference streams, ``"concat"`` (appended to the image sequence, shares
      the timestep) or ``"cached"`` (run once at t = 0, keys/values appended every step).
    - ``meta``: free-form per-stream data (e.g. which token positions name which subject).
    """

    name: str
    tokens: torch.Tensor
    position_ids: torch.Tensor
    side: Side = "text"
    subject: int | None = None
    adapter: str | None = None
    independent: bool = False
    mode: ReferenceMode = "concat"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConditionError("A ConditionStream needs a non-empty string name.")
        if self.side not in ("text", "reference", "raw"):
            raise ConditionError(f"Stream {self.name!r}: side must be 'text', 'reference' or 'raw', not {self.side!r}.")
        if self.mode not in ("concat", "cached"):
            raise ConditionError(f"Stream {self.name!r}: mode must be 'concat' or 'cached', not {self.mode!r}.")
        if self.side != "raw":
            for field_name in ("tokens", "position_ids"):
                value = getattr(self, field_name)
                if not isinstance(value, torch.Tensor):
                    raise ConditionError(
                        f"Stream {self.name!r}: {field_name} must be a torch.Tensor, got {type(value).__name__}."
                    )
            if self.tokens.ndim != 3:
                raise ConditionError(
                    f"Stream {self.name!r}: tokens must be (batch, length, width), got shape {tuple(self.tokens.shape)}."
                )
            if self.position_ids.ndim != 2 or self.position_ids.shape != (self.tokens.shape[1], 3):
                raise ConditionError(
                    f"Stream {self.name!r}: position_ids must be ({self.tokens.shape[1]}, 3) to match the tokens, "
                    f"got {tuple(self.position_ids.shape)}."
                )
        if self.mode == "cached" and not self.independent:
            raise ConditionError(
                f"Stream {self.name!r} is cached but not independent: only a stream that attends to itself alone "
                "can have its keys/values computed once. Set independent=True or mode='concat'."
            )

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])

    def with_tokens(self, tokens: torch.Tensor, **changes: Any) -> "ConditionStream":
        """A copy with new tokens (and any other field changed); the original is left as it was."""
        return replace(self, tokens=tokens, meta=dict(self.meta), **changes)


@dataclass
class ConditionSet:
    """The ordered streams of one request plus request-level data.

    ``pooled`` is the pooled text embedding FLUX modulates with; ``meta`` holds per-token
    metadata for rules and aggregators (for instance ``meta["subject_tokens"]``:
    ``{stream name: {subject index: [token positions]}}``).
    """

    streams: list[ConditionStream] = field(default_factory=list)
    pooled: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConditionError(f"Two condition streams are named {dupes[0]!r}; give each stream a unique name.")

    def __iter__(self):
        return iter(self.streams)

    def __len__(self) -> int:
        return len(self.streams)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.streams)

    def get(self, name: str) -> ConditionStream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise ConditionError(f"No condition stream named {name!r}; streams are {[s.name for s in self.streams]}.")

    def by_side(self, side: Side) -> list[ConditionStream]:
        return [s for s in self.streams if s.side == side]

    @property
    def text(self) -> list[ConditionStream]:
        return self.by_side("text")

    @property
    def references(self) -> list[ConditionStream]:
        return self.by_side("reference")

    def replace(self, name: str, stream: ConditionStream) -> "ConditionSet":
        """A new set with stream ``name`` swapped for ``stream`` (same place in the order)."""
        self.get(name)
        streams = [stream if s.name == name else s for s in self.streams]
        return ConditionSet(streams, self.pooled, dict(self.meta))

    def without(self, name: str) -> "ConditionSet":
        self.get(name)
        return ConditionSet([s for s in self.streams if s.name != name], self.pooled, dict(self.meta))

    def with_streams(self, streams: Iterable[ConditionStream]) -> "ConditionSet":
        return ConditionSet(list(self.streams) + list(streams), self.pooled, dict(self.meta))

    @staticmethod
    def merge(parts: Iterable["ConditionSet"]) -> "ConditionSet":
        """Join the parts' streams in order; at most one part may carry ``pooled``."""
        streams: list[ConditionStream] = []
        pooled = None
        meta: dict[str, Any] = {}
        for part in parts:
            streams.extend(part.streams)
            if part.pooled is not None:
                if pooled is not None:
                    raise ConditionError(
                        "Two condition encoders both produced a pooled embedding; keep one text encoder that pools."
                    )
                pooled = part.pooled
            for key, value in part.meta.items():
                if isinstance(value, dict) and isinstance(meta.get(key), dict):
                    meta[key] = {**meta[key], **value}
                else:
                    meta[key] = value
        return ConditionSet(streams, pooled, meta)

    def repeat(self, times: int) -> "ConditionSet":
        """Every tensor repeated ``times`` along the batch axis (for num_images_per_prompt)."""
        if times == 1:
            return self
        streams = [s.with_tokens(s.tokens.repeat_interleave(times, dim=0)) for s in self.streams]
        pooled = None if self.pooled is None else self.pooled.repeat_interleave(times, dim=0)
        return ConditionSet(streams, pooled, dict(self.meta))
