"""The joint attention layout of one FLUX pass, and the mask rules edit.

FLUX runs one joint attention over ``[text tokens, image tokens]``. With condition streams
the key sequence becomes::

    [text stream 1 | text stream 2 | ... | image | concat reference 1 | ... | cached reference 1 | ...]

Queries are the same sequence without the cached references (their keys/values are
appended from the cache, they are not recomputed). Rules address groups of tokens by
*selector*: a stream name, ``"image"``, ``"kind:text"``, ``"kind:reference"`` or ``"*"``.

The mask keeps two tensors: ``allowed`` (bool) and ``bias`` (float). Rules can only clear
``allowed`` or add to ``bias``, so no rule can unblock a pair another rule blocked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..conditions import ConditionSet
from ..errors import AttentionRuleError

GroupKind = Literal["text", "image", "reference"]


@dataclass(frozen=True)
class TokenGroup:
    """A contiguous run of tokens in the joint sequence."""

    name: str
    kind: GroupKind
    start: int
    length: int
    is_query: bool
    subject: int | None = None

    @property
    def stop(self) -> int:
        return self.start + self.length

    @property
    def span(self) -> slice:
        return slice(self.start, self.stop)


class JointLayout:
    """Where each stream's tokens sit in the queries and keys of one pass."""

    def __init__(self, groups: list[TokenGroup]):
        self.groups = groups
        self._by_name = {g.name: g for g in groups}
        if len(self._by_name) != len(groups):
            raise AttentionRuleError("Two token groups share a name; stream names must be unique and not 'image'.")

    @classmethod
    def build(cls, conditions: ConditionSet, image_tokens: int) -> "JointLayout":
        groups: list[TokenGroup] = []
        pos = 0

        def add(name: str, kind: GroupKind, length: int, is_query: bool, subject: int | None) -> None:
            nonlocal pos
            groups.append(TokenGroup(name, kind, pos, length, is_query, subject))
            pos += length

        for s in conditions.text:
            add(s.name, "text", s.length, True, s.subject)
        add("image", "image", image_tokens, True, None)
        for s in conditions.references:
            if s.mode == "concat":
                add(s.name, "reference", s.length, True, s.subject)
        for s in conditions.references:
            if s.mode == "cached":
                add(s.name, "reference", s.length, False, s.subject)
        return cls(groups)

    @property
    def num_keys(self) -> int:
        return sum(g.length for g in self.groups)

    @property
    def num_queries(self) -> int:
        return sum(g.length for g in self.groups if g.is_query)

    @property
    def text_length(self) -> int:
        return sum(g.length for g in self.groups if g.kind == "text")

    def group(self, name: str) -> TokenGroup:
        try:
            return self._by_name[name]
        except KeyError:
            raise AttentionRuleError(
                f"No token group {name!r} in this pass; groups are {[g.name for g in self.groups]}."
            ) from None

    def select(self, selector: str) -> list[TokenGroup]:
        """Groups matching ``selector``: a name, ``"image"``, ``"kind:<kind>"`` or ``"*"``."""
        if selector == "*":
            return list(self.groups)
        if selector.startswith("kind:"):
            kind = selector[5:]
            if kind not in ("text", "image", "reference"):
                raise AttentionRuleError(f"Unknown group kind in selector {selector!r}; use text, image or reference.")
            return [g for g in self.groups if g.kind == kind]
        return [self.group(selector)]

    def query_mask(self, name: str) -> torch.Tensor:
        """Bool ``(num_queries,)`` mask of the given group's query positions."""
        mask = torch.zeros(self.num_queries, dtype=torch.bool)
        g = self.group(name)
        if g.is_query:
            mask[g.span] = True
        return mask


class JointAttentionMask:
    """Allowed pairs and additive bias over ``(batch, queries, keys)`` of one pass."""

    def __init__(self, layout: JointLayout, batch_size: int = 1):
        self.layout = layout
        self.batch_size = batch_size
        self.allowed = torch.ones(batch_size, layout.num_queries, layout.num_keys, dtype=torch.bool)
        self.bias = torch.zeros(batch_size, layout.num_queries, layout.num_keys)

    def copy(self) -> "JointAttentionMask":
        other = JointAttentionMask.__new__(JointAttentionMask)
        other.layout, other.batch_size = self.layout, self.batch_size
        other.allowed, other.bias = self.allowed.clone(), self.bias.clone()
        return other

    def _query_rows(self, group: TokenGroup, tokens: torch.Tensor | None) -> torch.Tensor:
        """Bool ``(batch, num_queries)`` rows: the group's queries, narrowed by a token mask."""
        rows = torch.zeros(self.batch_size, self.layout.num_queries, dtype=torch.bool)
        if not group.is_query:
            return rows
        if tokens is None:
            rows[:, group.span] = True
            return rows
        tokens = torch.as_tensor(tokens, dtype=torch.bool)
        if tokens.shape[-1] != group.length:
            raise AttentionRuleError(
                f"A token mask for group {group.name!r} has {tokens.shape[-1]} entries; the group has {group.length}."
            )
        rows[:, group.span] = tokens.expand(self.batch_size, group.length) if tokens.ndim == 1 else tokens
        return rows

    def _key_cols(self, group: TokenGroup, tokens: torch.Tensor | None) -> torch.Tensor:
        cols = torch.zeros(self.layout.num_keys, dtype=torch.bool)
        if tokens is None:
            cols[group.span] = True
        else:
            tokens = torch.as_tensor(tokens, dtype=torch.bool)
            if tokens.shape != (group.length,):
                raise AttentionRuleError(
                    f"A key token mask for group {group.name!r} has shape {tuple(tokens.shape)}; "
                    f"expected ({group.length},)."
                )
            cols[group.span] = tokens
        return cols

    def block(
        self,
        queries: str,
        keys: str,
        query_tokens: torch.Tensor | None = None,
        key_tokens: torch.Tensor | None = None,
    ) -> None:
        """Forbid the selected queries from attending to the selected keys."""
        for qg in self.layout.select(queries):
            rows = self._query_rows(qg, query_tokens if query_tokens is not None else None)
            for kg in self.layout.select(keys):
                cols = self._key_cols(kg, key_tokens)
                self.allowed &= ~(rows[:, :, None] & cols[None, None, :])

    def restrict_keys(self, keys: str, queries: str, region: torch.Tensor) -> None:
        """Only queries inside ``region`` (a token mask over the query group) may see ``keys``."""
        for qg in self.layout.select(queries):
            region_t = torch.as_tensor(region, dtype=torch.bool)
            self.block(qg.name, keys, query_tokens=~region_t)

    def add_bias(self, keys: str, value: float, queries: str = "*") -> None:
        """Add ``value`` to the logits of the selected queries on the selected keys."""
        if not math.isfinite(float(value)):
            raise AttentionRuleError(
                f"Attention bias {value} on {keys!r} is not finite; use block() to forbid pairs and add_bias() "
                "only with finite values."
            )
        for qg in self.layout.select(queries):
            rows = self._query_rows(qg, None)
            for kg in self.layout.select(keys):
                cols = self._key_cols(kg, None)
                self.bias += (rows[:, :, None] & cols[None, None, :]).float() * float(value)

    def apply_stream_weights(self, weights: dict[str, float]) -> None:
        """A schedule's weights: 0 hides a stream's keys from every *other* group; w adds log(w).

        A stream's own tokens keep attending to themselves, so a stream switched off for a
        step is exactly as if it were absent for everyone else.
        """
        for name, w in weights.items():
            if name not in self.layout._by_name or w == 1:
                continue
            if w < 0 or not math.isfinite(w):
                raise AttentionRuleError(f"Stream weight for {name!r} is {w}; weights must be finite and >= 0.")
            for other in self.layout.groups:
                if other.name == name or not other.is_query:
                    continue
                if w == 0:
                    self.block(other.name, name)
                else:
                    self.add_bias(name, math.log(w), queries=other.name)

    @property
    def is_trivial(self) -> bool:
        return bool(self.allowed.all()) and not bool(self.bias.any())

    def additive(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor | None:
        """The ``(batch, 1, queries, keys)`` additive mask for SDPA, or None when nothing is masked."""
        if self.is_trivial:
            return None
        empty = ~self.allowed.any(dim=-1)
        if empty.any():
            b, q = (int(i) for i in empty.nonzero()[0])
            name = next(g.name for g in self.layout.groups if g.is_query and g.start <= q < g.stop)
            raise AttentionRuleError(
                f"After the attention rules, query token {q} (group {name!r}, batch {b}) may attend to no key; "
                "a rule blocks too much (does one block image->image?)."
            )
        out = self.bias.masked_fill(~self.allowed, float("-inf"))
        return out[:, None].to(device=device, dtype=dtype)


def isolate_independent_streams(mask: JointAttentionMask, conditions: ConditionSet) -> None:
    """An independent stream attends only to itself (its declared contract)."""
    for stream in conditions:
        if stream.side == "raw" or not stream.independent:
            continue
        group = mask.layout.group(stream.name)
        if not group.is_query:
            continue  # cached: its own pass already attends only to itself
        for other in mask.layout.groups:
            if other.name != stream.name:
                mask.block(stream.name, other.name)

