"""Attention by group blocks: a :class:`JointAttentionMask` compiled into a few attention calls.

Every rule edits whole (query group, key group) blocks, optionally restricted to some tokens
of either group (:class:`~smg_sdk.attention.masks.MaskOp`). So the queries of one group fall
into a few *token patterns*: tokens that every edit selects or skips alike (in every batch
row). All tokens of one pattern have the same row of the mask, a ``(batch, keys)`` vector, and
can attend in one call:

- keys a pattern may not see at all are left out of its call;
- a pattern whose remaining keys carry no bias and no token-level block runs *without a mask*
  (fused kernels: flash, memory-efficient);
- otherwise its call gets a ``(batch, 1, 1, keys)`` additive row, broadcast over its queries.

Adjacent calls with the same keys and mask are merged (text and image queries that see
everything run as one call, as in plain FLUX). Nothing here builds a ``queries x keys``
tensor, except the *dense fallbacks*, which the plan's ``notes`` name: a query group whose
tokens form more than ``max_patterns`` patterns gets its own ``(batch, 1, Lq, keys)`` mask
(``Lq`` that group's length), and a mask in dense mode (its ``allowed``/``bias`` were read
or edited directly) runs as one dense call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masks import JointAttentionMask, MaskOp, TokenGroup, empty_row_error

QuerySelect = slice | torch.Tensor


@dataclass(frozen=True)
class AttentionBlock:
    """One attention call of a pass.

    - ``queries``: positions among the pass's queries, a ``slice`` or a LongTensor ``(n,)``;
    - ``keys``: spans of the pass's keys, concatenated in this order for the call;
    - ``mask``: additive float ``(batch, 1, 1, Kv)`` (one row for all its queries) or
      ``(batch, 1, n, Kv)`` (dense fallback), ``Kv`` the total length of ``keys``; None
      runs the call without a mask.
    """

    queries: QuerySelect
    keys: tuple[slice, ...]
    mask: torch.Tensor | None

    @property
    def num_queries(self) -> int:
        q = self.queries
        return q.stop - q.start if isinstance(q, slice) else int(q.numel())


@dataclass(frozen=True)
class AttentionPlan:
    """A pass's joint attention as :class:`AttentionBlock` calls whose queries partition the pass's queries.

    ``notes`` says where and why a dense mask is used (empty: no dense mask at all).
    """

    num_queries: int
    num_keys: int
    blocks: tuple[AttentionBlock, ...]
    notes: tuple[str, ...] = ()

    @property
    def is_trivial(self) -> bool:
        """One unmasked call over every query and key: plain attention."""
        if len(self.blocks) != 1:
            return False
        b = self.blocks[0]
        return b.mask is None and b.queries == slice(0, self.num_queries) and b.keys == (slice(0, self.num_keys),)

    def to(self, device: torch.device | str | None, dtype: torch.dtype) -> "AttentionPlan":
        """The same plan with masks (and query indices) on ``device``, masks in ``dtype``."""
        blocks = tuple(
            AttentionBlock(
                b.queries if isinstance(b.queries, slice) else b.queries.to(device),
                b.keys,
                None if b.mask is None else b.mask.to(device=device, dtype=dtype),
            )
            for b in self.blocks
        )
        return AttentionPlan(self.num_queries, self.num_keys, blocks, self.notes)

    def describe(self) -> str:
        """One line: how many calls, how many unmasked, row-masked and dense, and the notes."""
        rows = sum(1 for b in self.blocks if b.mask is not None and b.mask.shape[-2] == 1)
        dense = sum(1 for b in self.blocks if b.mask is not None and b.mask.shape[-2] != 1)
        unmasked = len(self.blocks) - rows - dense
        line = f"{len(self.blocks)} attention call(s): {unmasked} unmasked, {rows} with a key-row mask, {dense} dense"
        return "; ".join([line, *self.notes])


def compile_plan(mask: JointAttentionMask, max_patterns: int = 32, check: bool = True) -> AttentionPlan:
    """Compile ``mask`` into attention calls by group blocks (see the module docstring).

    ``max_patterns``: a query group with more token patterns than this runs with its own
    dense rows. ``check``: raise :class:`~smg_sdk.errors.AttentionRuleError` (the same error
    as ``mask.additive()``) when a query may attend to no key (a mask in dense mode always
    checks).
    """
    layout = mask.layout
    if mask.is_dense:
        additive = mask.additive()
        block = AttentionBlock(slice(0, layout.num_queries), (slice(0, layout.num_keys),), additive)
        notes = () if additive is None else ("dense: the mask's allowed/bias tensors were read or edited directly",)
        return AttentionPlan(layout.num_queries, layout.num_keys, (block,), notes)
    blocks: list[AttentionBlock] = []
    notes: list[str] = []
    empty: list[tuple[int, int]] = []
    for qg in layout.groups:
        if not qg.is_query or qg.length == 0:
            continue
        ops = [op for op in mask.ops if op.query == qg.name]
        inverse, reps = _patterns(ops, qg.length)
        if len(reps) > max_patterns:
            blocks.append(_dense_group(mask, qg, ops, empty))
            notes.append(f"dense rows for group {qg.name!r} ({len(reps)} token patterns > {max_patterns})")
            continue
        calls: list[tuple[torch.Tensor, tuple[slice, ...], torch.Tensor | None]] = []
        for p, rep in enumerate(reps):
            tokens = (inverse == p).nonzero().flatten()
            keys, row = _pattern_call(mask, qg, ops, rep, empty)
            same = next((i for i, (_, k, r) in enumerate(calls) if k == keys and _same_row(r, row)), None)
            if same is None:
                calls.append((tokens, keys, row))
            else:  # patterns whose edits end in the same row (e.g. a bias of 0) share a call
                calls[same] = (torch.cat([calls[same][0], tokens]).sort().values, keys, row)
        blocks += [AttentionBlock(_query_select(tokens, qg.start), keys, row) for tokens, keys, row in calls]
    if check and empty:
        raise empty_row_error(layout, *min(empty))
    return AttentionPlan(layout.num_queries, layout.num_keys, tuple(_merge(blocks)), tuple(notes))


def _patterns(ops: list[MaskOp], length: int) -> tuple[torch.Tensor, list[int]]:
    """Each query token's pattern index ``(length,)`` and one representative token per pattern."""
    split = [op.rows for op in ops if op.rows is not None]
    if not split:
        return torch.zeros(length, dtype=torch.long), [0]
    signature = torch.stack(split, dim=-1).permute(1, 0, 2).reshape(length, -1).to(torch.uint8)
    _, inverse = torch.unique(signature, dim=0, return_inverse=True)
    # number patterns by first occurrence, so calls follow token order
    first: dict[int, int] = {}
    for token, p in enumerate(inverse.tolist()):
        first.setdefault(p, token)
    order = sorted(first, key=first.get)
    renumber = torch.empty(len(order), dtype=torch.long)
    renumber[torch.tensor(order)] = torch.arange(len(order))
    return renumber[inverse], [first[p] for p in order]


def _key_rows(mask: JointAttentionMask, ops: list[MaskOp], rep: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per edited key group: ``(allowed, bias)``, each ``(batch, Lk)``, for query token ``rep`` of the group.

    ``rep=None`` applies every op to all its rows (used only for ops without ``rows``).
    """
    rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for op in ops:
        kg = mask.layout.group(op.key)
        allowed, bias = rows.get(op.key) or (
            torch.ones(mask.batch_size, kg.length, dtype=torch.bool), torch.zeros(mask.batch_size, kg.length)
        )
        sel = op.cols if op.cols is not None else torch.ones(mask.batch_size, kg.length, dtype=torch.bool)
        if op.rows is not None:
            sel = sel & op.rows[:, rep, None]
        if op.value is None:
            allowed = allowed & ~sel
        else:
            bias = bias + sel.float() * op.value
        rows[op.key] = (allowed, bias)
    return rows


def _pattern_call(
    mask: JointAttentionMask, qg: TokenGroup, ops: list[MaskOp], rep: int, empty: list[tuple[int, int]]
) -> tuple[tuple[slice, ...], torch.Tensor | None]:
    """The keys and mask of the call of one token pattern (``rep`` its first token, within ``qg``).

    Keys: the visible key groups' spans, merged; mask: None, or a ``(batch, 1, 1, Kv)`` key
    row over the span from the first to the last visible group when a row is needed.
    Batch rows where the pattern sees no key are added to ``empty`` as ``(row, query)``.
    """
    rows = _key_rows(mask, ops, rep)
    keys = [kg for kg in mask.layout.groups if kg.length]
    state = {}  # per key group: "clear", "hidden" or the additive row (batch, Lk)
    for kg in keys:
        if kg.name not in rows:
            state[kg.name] = "clear"
            continue
        allowed, bias = rows[kg.name]
        if not bool(allowed.any()):
            state[kg.name] = "hidden"
        elif bool(allowed.all()) and not bool(bias.any()):
            state[kg.name] = "clear"
        else:
            state[kg.name] = bias.masked_fill(~allowed, float("-inf"))
    sees = torch.zeros(mask.batch_size, dtype=torch.bool)
    for kg in keys:
        s = state[kg.name]
        sees |= (s == "clear") if isinstance(s, str) else torch.isfinite(s).any(dim=-1)
    for b in (~sees).nonzero().flatten().tolist():
        empty.append((b, qg.start + rep))
    visible = [kg for kg in keys if not (isinstance(state[kg.name], str) and state[kg.name] == "hidden")]
    if not visible:
        return (), None
    if all(isinstance(state[kg.name], str) for kg in visible):
        return _merge_spans([kg.span for kg in visible]), None
    covered = [kg for kg in keys if visible[0].start <= kg.start < visible[-1].stop]
    row = torch.cat([_row_values(state[kg.name], mask.batch_size, kg.length) for kg in covered], dim=-1)
    return (slice(visible[0].start, visible[-1].stop),), row[:, None, None, :]


def _row_values(state, batch: int, length: int) -> torch.Tensor:
    if isinstance(state, torch.Tensor):
        return state
    return torch.full((batch, length), 0.0 if state == "clear" else float("-inf"))


def _dense_group(
    mask: JointAttentionMask, qg: TokenGroup, ops: list[MaskOp], empty: list[tuple[int, int]]
) -> AttentionBlock:
    """The fallback call of a group with too many token patterns: its own ``(batch, 1, Lq, keys)`` mask."""
    allowed = torch.ones(mask.batch_size, qg.length, mask.layout.num_keys, dtype=torch.bool)
    bias = torch.zeros(mask.batch_size, qg.length, mask.layout.num_keys)
    for op in ops:
        kg = mask.layout.group(op.key)
        rows = op.rows if op.rows is not None else torch.ones(mask.batch_size, qg.length, dtype=torch.bool)
        cols = op.cols if op.cols is not None else torch.ones(mask.batch_size, kg.length, dtype=torch.bool)
        pairs = rows[:, :, None] & cols[:, None, :]
        if op.value is None:
            allowed[:, :, kg.span] &= ~pairs
        else:
            bias[:, :, kg.span] += pairs.float() * op.value
    for b, q in (~allowed.any(dim=-1)).nonzero().tolist():
        empty.append((b, qg.start + q))
    additive = bias.masked_fill(~allowed, float("-inf"))[:, None]
    return AttentionBlock(qg.span, (slice(0, mask.layout.num_keys),), additive)


def _query_select(tokens: torch.Tensor, offset: int) -> QuerySelect:
    """A slice when ``tokens`` (sorted, within a group) are contiguous, else their positions."""
    first, last = int(tokens[0]), int(tokens[-1])
    if last - first + 1 == tokens.numel():
        return slice(offset + first, offset + last + 1)
    return tokens + offset


def _merge_spans(spans: list[slice]) -> tuple[slice, ...]:
    out: list[slice] = []
    for s in spans:
        if out and out[-1].stop == s.start:
            out[-1] = slice(out[-1].start, s.stop)
        else:
            out.append(s)
    return tuple(out)


def _merge(blocks: list[AttentionBlock]) -> list[AttentionBlock]:
    """Join consecutive calls with adjacent query slices, the same keys and the same key-row mask."""
    out: list[AttentionBlock] = []
    for b in blocks:
        prev = out[-1] if out else None
        if (
            prev is not None and isinstance(prev.queries, slice) and isinstance(b.queries, slice)
            and prev.queries.stop == b.queries.start and prev.keys == b.keys and _same_row(prev.mask, b.mask)
        ):
            out[-1] = AttentionBlock(slice(prev.queries.start, b.queries.stop), b.keys, b.mask)
        else:
            out.append(b)
    return out


def _same_row(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape[-2] == 1 and b.shape[-2] == 1 and torch.equal(a, b)
