"""Test-time scaling in the pipeline: N plans -> N candidates, encoded once, sampled in batches.

**Sharing encodings.** A plan changes what the encoders see only through its prompt rewrite
(:attr:`~smg_sdk.types.Plan.prompt`); encoders never see the plan itself. An encoder whose
output does not depend on the prompt says so with ``reads_prompt = False`` (VAE references,
image encoders); it runs once and its streams are shared by every candidate and by the
negative prompt. Every other encoder runs once per distinct prompt. The default is
``reads_prompt = True``, so an encoder that says nothing is never wrongly shared.

**Batching.** Consecutive candidates whose condition sets have the same structure (stream
names and order, sides, modes, subjects, adapters, token shapes, position ids) and the same
request-level ``meta`` apart from their plans are stacked along the batch axis and sampled in
one call. The
stacked set carries ``meta["plans"]``, the plan of every batch row (read it with
:func:`smg_sdk.plans.plans_for_rows`), and ``meta["plan"]`` only when every row has the same
plan. Per-stream metadata that differs between candidates (each prompt's token ids, say) is
moved to ``stream.meta["rows"]``: one dict per batch row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .conditions import ConditionSet, ConditionStream
from .errors import ConditionError
from .plans import plans_for_rows
from .types import Request

if TYPE_CHECKING:  # pragma: no cover
    from .encoding_cache import EncodingCache
    from .interfaces import ConditionEncoder

PLAN_KEYS = ("plan", "plans")
"""Request-level meta keys that may differ between candidates batched together."""

def encode_shared(
    encoders: Sequence["ConditionEncoder"], backend: Any, requests: Sequence[Request],
    cache: "EncodingCache | None" = None,
) -> tuple[list[ConditionSet], dict[str, int]]:
    """The merged encoder outputs for each request (which may differ in their prompt, and the
    negative prompt's request in its subjects: ``negative_references=False`` drops them).

    Returns the condition sets in ``requests`` order and the number of calls made per encoder
    (``{"<i>:<ClassName>": calls}``, counting calls answered by ``cache`` too), for logs and tests.
    With ``cache``, each call goes through :meth:`~smg_sdk.encoding_cache.EncodingCache.encode`.
    Requests with the same subjects share the encoders that do not read the prompt.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(tuple(id(s) for s in request.subjects), []).append(i)
    out: list[ConditionSet | None] = [None] * len(requests)
    calls: dict[str, int] = {}
    for rows in groups.values():
        sets, counts = _encode_same_subjects(encoders, backend, [requests[i] for i in rows], cache)
        for i, conditions in zip(rows, sets):
            out[i] = conditions
        for key, n in counts.items():
            calls[key] = calls.get(key, 0) + n
    return out, calls


def _encode_same_subjects(encoders, backend, requests: Sequence[Request], cache) -> tuple[list[ConditionSet], dict[str, int]]:
    run = cache.encode if cache is not None else (lambda encoder, request, backend: encoder.encode(request, backend))
    prompts: list[str] = []
    for r in requests:
        if r.prompt not in prompts:
            prompts.append(r.prompt)
    by_prompt = {r.prompt: r for r in requests}
    outputs: dict[str, list[ConditionSet]] = {p: [] for p in prompts}
    calls: dict[str, int] = {}
    for i, encoder in enumerate(encoders):
        key = f"{i}:{type(encoder).__name__}"
        first = run(encoder, by_prompt[prompts[0]], backend)
        calls[key] = 1
        outputs[prompts[0]].append(first)
        for prompt in prompts[1:]:
            if getattr(encoder, "reads_prompt", True):
                outputs[prompt].append(run(encoder, by_prompt[prompt], backend))
                calls[key] += 1
            else:
                outputs[prompt].append(first)
    return [ConditionSet.merge(outputs[r.prompt]) for r in requests], calls


# ---------------------------------------------------------------------------------- batching


def same_value(a: Any, b: Any) -> bool:
    """Deep equality that understands tensors and arrays inside dicts, lists and tuples."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
            and a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu()))
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and bool(np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects whose == is not a truth value are "different"
        return False


def _batch(conditions: ConditionSet) -> int:
    sizes = {int(s.tokens.shape[0]) for s in conditions.streams if isinstance(s.tokens, torch.Tensor)}
    if conditions.pooled is not None:
        sizes.add(int(conditions.pooled.shape[0]))
    if len(sizes) > 1:
        raise ConditionError(f"Condition streams disagree on batch size: {sorted(sizes)}.")
    return sizes.pop() if sizes else 1


def can_stack(a: ConditionSet, b: ConditionSet) -> bool:
    """Whether ``a`` and ``b`` can run as rows of one batch (see the module docstring)."""
    if len(a.streams) != len(b.streams) or (a.pooled is None) != (b.pooled is None):
        return False
    if a.pooled is not None and (a.pooled.shape[1:] != b.pooled.shape[1:] or a.pooled.dtype != b.pooled.dtype):
        return False
    for s, t in zip(a.streams, b.streams):
        if (s.name, s.side, s.mode, s.subject, s.adapter, s.independent) != (
            t.name, t.side, t.mode, t.subject, t.adapter, t.independent
        ):
            return False
        if not isinstance(s.tokens, torch.Tensor) or not isinstance(t.tokens, torch.Tensor):
            return False
        if s.tokens.shape[1:] != t.tokens.shape[1:] or s.tokens.dtype != t.tokens.dtype:
            return False
        if not same_value(s.position_ids, t.position_ids):
            return False
    strip = lambda m: {k: v for k, v in m.items() if k not in PLAN_KEYS}  # noqa: E731
    return same_value(strip(a.meta), strip(b.meta))


def stack(sets: Sequence[ConditionSet]) -> ConditionSet:
    """The condition sets as consecutive rows of one batch (they must :func:`can_stack`)."""
    sets = list(sets)
    if not sets:
        raise ConditionError("Nothing to stack: pass at least one condition set.")
    if len(sets) == 1:
        return sets[0]
    for other in sets[1:]:
        if not can_stack(sets[0], other):
            raise ConditionError("These condition sets differ in structure or metadata and cannot share a batch.")
    rows = [_batch(c) for c in sets]
    streams = []
    for j, first in enumerate(sets[0].streams):
        parts = [c.streams[j] for c in sets]
        streams.append(
            ConditionStream(
                name=first.name,
                tokens=torch.cat([p.tokens for p in parts], dim=0),
                position_ids=first.position_ids,
                side=first.side,
                subject=first.subject,
                adapter=first.adapter,
                independent=first.independent,
                mode=first.mode,
                meta=_stack_meta([p.meta for p in parts], rows),
            )
        )
    pooled = None if sets[0].pooled is None else torch.cat([c.pooled for c in sets], dim=0)
    meta = {k: v for k, v in sets[0].meta.items() if k not in PLAN_KEYS}
    if any(k in c.meta for c in sets for k in PLAN_KEYS):
        plans = [p for c, n in zip(sets, rows) for p in plans_for_rows(c, n)]
        meta["plans"] = plans
        if all(p is plans[0] for p in plans):
            meta["plan"] = plans[0]
    return ConditionSet(streams, pooled, meta)


def _stack_meta(metas: list[dict[str, Any]], rows: list[int]) -> dict[str, Any]:
    keys = set().union(*metas)
    shared = {k: metas[0][k] for k in keys if all(k in m and same_value(m[k], metas[0][k]) for m in metas)}
    differing = sorted(keys - set(shared))
    if differing:
        shared["rows"] = [
            {k: m.get(k) for k in differing} for m, n in zip(metas, rows) for _ in range(n)
        ]
    return shared


def batch_groups(sets: Sequence[ConditionSet], max_batch: int | None = None) -> list[list[int]]:
    """Runs of consecutive, stackable ``sets`` (at most ``max_batch`` each), as index lists.

    Only neighbours are grouped, so batches run in candidate order and a sampler drawing
    noise from one generator gives each candidate the noise it would get on its own.
    """
    groups: list[list[int]] = []
    for i, conditions in enumerate(sets):
        group = groups[-1] if groups else None
        room = group is not None and (max_batch is None or len(group) < max_batch)
        if room and can_stack(sets[group[0]], conditions):  # type: ignore[index]
            group.append(i)
        else:
            groups.append([i])
    return groups


__all__ = ["PLAN_KEYS", "batch_groups", "can_stack", "encode_shared", "same_value", "stack"]
