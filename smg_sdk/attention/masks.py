"""The joint attention layout of one FLUX pass, and the mask rules edit.

FLUX runs one joint attention over ``[text tokens, image tokens]``. With condition streams
the key sequence becomes::

    [text stream 1 | text stream 2 | ... | image | concat reference 1 | ... | cached reference 1 | ...]

Queries are the same sequence without the cached references (their keys/values are
appended from the cache, they are not recomputed). Rules address groups of tokens by
*selector*: a stream name, ``"image"``, ``"kind:text"``, ``"kind:reference"`` or ``"*"``.

The mask is the list of the rules' edits per group pair (block pairs, or add a logit bias),
each restricted to some tokens of the two groups; its dense form has two tensors, ``allowed``
(bool) and ``bias`` (float). Rules can only clear ``allowed`` or add to ``bias``, so no rule
can unblock a pair another rule blocked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence, Union

import torch

from ..conditions import ConditionSet
from ..errors import AttentionRuleError

if TYPE_CHECKING:  # pragma: no cover
    from .blocks import AttentionPlan

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


TokenMask = Union[torch.Tensor, Sequence[bool], Sequence[torch.Tensor]]
"""Which tokens of one group an operation touches.

``(length,)``: the same tokens in every batch row; ``(batch, length)`` (a tensor, or a
sequence of ``batch`` tensors of shape ``(length,)``): row ``b`` of the mask acts on batch
row ``b`` only. Anything ``torch.as_tensor`` reads as bools is accepted.
"""


@dataclass(frozen=True)
class MaskOp:
    """One rule edit on one (query group, key group) block of the mask, kept without a dense tensor.

    ``rows``: bool ``(batch, Lq)`` over the query group's tokens, or None for every token;
    ``cols``: bool ``(batch, Lk)`` over the key group's tokens, or None for every token.
    ``value``: None blocks the selected pairs; a float adds that logit offset to them. The
    pairs an op touches are ``rows[b, i] and cols[b, j]`` (an outer product per batch row).
    """

    query: str
    key: str
    rows: torch.Tensor | None
    cols: torch.Tensor | None
    value: float | None


class JointAttentionMask:
    """Allowed pairs and additive bias over ``(batch, queries, keys)`` of one pass.

    The mask is stored as the list of edits (:class:`MaskOp`, one per group pair), each
    ``O(batch x tokens)``, never as a ``queries x keys`` tensor; :meth:`plan` turns it into
    attention calls by group blocks (:mod:`smg_sdk.attention.blocks`).
    :meth:`block`, :meth:`restrict_keys` and :meth:`add_bias` take the same keyword-only
    arguments in the same order: ``queries``, ``keys`` (selectors, see
    :meth:`JointLayout.select`), then the operation's own value, then ``query_tokens`` and
    ``key_tokens`` (:data:`TokenMask` over each selected group; None = every token).
    Unknown selectors and token masks of the wrong shape raise :class:`AttentionRuleError`
    and leave the mask unchanged.

    ``allowed`` (bool) and ``bias`` (float), both ``(batch, num_queries, num_keys)``, are the
    dense view: reading or assigning either materializes both and switches this mask to
    *dense mode*, where the tensors are the truth (edits apply to them, in-place changes
    stick) and the pass runs with the dense additive mask (its plan says so).
    """

    def __init__(self, layout: JointLayout, batch_size: int = 1):
        self.layout = layout
        self.batch_size = batch_size
        self.ops: list[MaskOp] = []
        self._dense: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def is_dense(self) -> bool:
        """True once ``allowed``/``bias`` were read or assigned (see the class docstring)."""
        return self._dense is not None

    def _densify(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._dense is None:
            self._dense = self.materialize()
        return self._dense

    @property
    def allowed(self) -> torch.Tensor:
        """Bool ``(batch, num_queries, num_keys)``, True where a query may attend to a key (dense mode)."""
        return self._densify()[0]

    @allowed.setter
    def allowed(self, value: torch.Tensor) -> None:
        self._dense = (value, self._densify()[1])

    @property
    def bias(self) -> torch.Tensor:
        """Float ``(batch, num_queries, num_keys)`` added to the attention logits (dense mode)."""
        return self._densify()[1]

    @bias.setter
    def bias(self, value: torch.Tensor) -> None:
        self._dense = (self._densify()[0], value)

    def materialize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense ``(allowed, bias)``, each ``(batch, num_queries, num_keys)``, without changing the mode."""
        if self._dense is not None:
            return self._dense[0].clone(), self._dense[1].clone()
        shape = (self.batch_size, self.layout.num_queries, self.layout.num_keys)
        allowed, bias = torch.ones(shape, dtype=torch.bool), torch.zeros(shape)
        for op in self.ops:
            self._apply_dense(op, allowed, bias)
        return allowed, bias

    def _apply_dense(self, op: MaskOp, allowed: torch.Tensor, bias: torch.Tensor) -> None:
        qg, kg = self.layout.group(op.query), self.layout.group(op.key)
        rows = op.rows if op.rows is not None else torch.ones(self.batch_size, qg.length, dtype=torch.bool)
        cols = op.cols if op.cols is not None else torch.ones(self.batch_size, kg.length, dtype=torch.bool)
        pairs = rows[:, :, None] & cols[:, None, :]
        if op.value is None:
            allowed[:, qg.span, kg.span] &= ~pairs
        else:
            bias[:, qg.span, kg.span] += pairs.float() * op.value

    def copy(self) -> "JointAttentionMask":
        other = JointAttentionMask(self.layout, self.batch_size)
        other.ops = list(self.ops)  # ops are immutable: sharing them is safe
        if self._dense is not None:
            other._dense = (self._dense[0].clone(), self._dense[1].clone())
        return other

    def _token_rows(self, group: TokenGroup, tokens: TokenMask | None, argument: str) -> torch.Tensor:
        """Bool ``(batch, group.length)``: ``tokens`` checked against the group and broadcast."""
        if tokens is None:
            return torch.ones(self.batch_size, group.length, dtype=torch.bool)
        if isinstance(tokens, (list, tuple)) and tokens and all(isinstance(t, torch.Tensor) for t in tokens):
            tokens = torch.stack([t.to(torch.bool) for t in tokens])
        tokens = torch.as_tensor(tokens, dtype=torch.bool)
        if tokens.shape == (group.length,):
            return tokens.expand(self.batch_size, group.length)
        if tokens.shape == (self.batch_size, group.length):
            return tokens
        raise AttentionRuleError(
            f"{argument} for group {group.name!r} has shape {tuple(tokens.shape)}; expected ({group.length},) "
            f"for every batch row or ({self.batch_size}, {group.length}) for one row of tokens per batch row."
        )

    def _edit(
        self, queries: str, keys: str, query_tokens: TokenMask | None, key_tokens: TokenMask | None,
        value: float | None,
    ) -> None:
        """Record one block/bias edit on every selected group pair (all arguments checked first)."""
        query_groups, key_groups = self.layout.select(queries), self.layout.select(keys)
        rows = [(qg, self._token_rows(qg, query_tokens, "query_tokens")) for qg in query_groups]
        cols = [(kg, self._token_rows(kg, key_tokens, "key_tokens")) for kg in key_groups]
        ops = []
        for qg, r in rows:
            if not qg.is_query or not bool(r.any()):  # a cached group has no queries in this pass
                continue
            for kg, c in cols:
                if bool(c.any()):
                    ops.append(MaskOp(qg.name, kg.name, _compact(r), _compact(c), value))
        for op in ops:
            if self._dense is not None:
                self._apply_dense(op, *self._dense)
            else:
                self.ops.append(op)

    def block(
        self,
        *,
        queries: str,
        keys: str,
        query_tokens: TokenMask | None = None,
        key_tokens: TokenMask | None = None,
    ) -> None:
        """Forbid the selected query tokens from attending to the selected key tokens.

        ``query_tokens``: bool ``(Lq,)`` or ``(batch, Lq)`` over each group ``queries``
        selects (``Lq`` its length); ``key_tokens`` likewise ``(Lk,)`` or ``(batch, Lk)``
        over each group ``keys`` selects. None selects every token. Clears ``allowed`` on
        the selected pairs; a blocked pair stays blocked whatever runs later.
        """
        self._edit(queries, keys, query_tokens, key_tokens, None)

    def restrict_keys(
        self,
        *,
        queries: str,
        keys: str,
        query_tokens: TokenMask,
        key_tokens: TokenMask | None = None,
    ) -> None:
        """Only the marked query tokens may see the selected keys; the others are blocked from them.

        ``query_tokens`` (required): bool ``(Lq,)`` or ``(batch, Lq)`` over each group
        ``queries`` selects, True = may still attend. ``key_tokens``: ``(Lk,)`` or
        ``(batch, Lk)``, narrows which keys are restricted (None: all of them). Same as
        ``block(queries=..., keys=..., query_tokens=~query_tokens, key_tokens=...)``.
        """
        regions = [(qg, self._token_rows(qg, query_tokens, "query_tokens")) for qg in self.layout.select(queries)]
        for kg in self.layout.select(keys):
            self._token_rows(kg, key_tokens, "key_tokens")
        for qg, region in regions:
            self.block(queries=qg.name, keys=keys, query_tokens=~region, key_tokens=key_tokens)

    def add_bias(
        self,
        *,
        queries: str,
        keys: str,
        value: float,
        query_tokens: TokenMask | None = None,
        key_tokens: TokenMask | None = None,
    ) -> None:
        """Add ``value`` (a finite logit offset) to the selected (query token, key token) pairs.

        ``query_tokens`` / ``key_tokens``: as in :meth:`block`, ``(L,)`` or ``(batch, L)``
        bools over each selected group. Raises :class:`AttentionRuleError` for a
        non-finite ``value`` (forbid pairs with :meth:`block`), leaving the mask unchanged.
        """
        if not math.isfinite(float(value)):
            raise AttentionRuleError(
                f"Attention bias {value} on {keys!r} is not finite; use block() to forbid pairs and add_bias() "
                "only with finite values."
            )
        self._edit(queries, keys, query_tokens, key_tokens, float(value))

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
                    self.block(queries=other.name, keys=name)
                else:
                    self.add_bias(queries=other.name, keys=name, value=math.log(w))

    def plan(self, max_patterns: int = 32) -> "AttentionPlan":
        """The attention calls this mask runs as (see :func:`smg_sdk.attention.blocks.compile_plan`)."""
        from .blocks import compile_plan

        return compile_plan(self, max_patterns)

    @property
    def is_trivial(self) -> bool:
        """True when nothing is masked: every pair allowed, no bias."""
        if self._dense is not None:
            return bool(self._dense[0].all()) and not bool(self._dense[1].any())
        from .blocks import compile_plan

        return compile_plan(self, check=False).is_trivial

    def additive(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor | None:
        """The dense ``(batch, 1, queries, keys)`` additive mask for SDPA, or None when nothing is masked.

        Builds ``queries x keys`` tensors: the reference the block path (:meth:`plan`) is
        tested against. Raises :class:`AttentionRuleError` when a query may attend to no key.
        """
        if self.is_trivial:
            return None
        allowed, bias = self._dense if self._dense is not None else self.materialize()
        empty = ~allowed.any(dim=-1)
        if empty.any():
            b, q = (int(i) for i in empty.nonzero()[0])
            raise empty_row_error(self.layout, b, q)
        out = bias.masked_fill(~allowed, float("-inf"))
        return out[:, None].to(device=device, dtype=dtype)


def empty_row_error(layout: JointLayout, batch_row: int, query: int) -> AttentionRuleError:
    """The error for query token ``query`` of ``batch_row`` left with no key to attend to."""
    name = next(g.name for g in layout.groups if g.is_query and g.start <= query < g.stop)
    return AttentionRuleError(
        f"After the attention rules, query token {query} (group {name!r}, batch {batch_row}) may attend to no key; "
        "a rule blocks too much (does one block image->image?)."
    )


def _compact(tokens: torch.Tensor) -> torch.Tensor | None:
    """None for a token mask that selects every token, else a private copy (callers may reuse theirs)."""
    return None if bool(tokens.all()) else tokens.clone()


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
                mask.block(queries=stream.name, keys=other.name)

