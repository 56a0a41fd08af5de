"""Contract checks, one per component kind. Each raises AssertionError naming the broken rule.

Encoders and aggregators are also held to their declared contracts (``makes_streams``,
``drops_streams``, ``writes_meta``; see :mod:`smg_sdk.contracts`): a stream or ``meta`` key
they add or remove without declaring it fails the check.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..attention.masks import JointAttentionMask, JointLayout
from ..conditions import ConditionSet
from ..contracts import StreamSpec, declared_keys, declared_streams
from ..interfaces import Aggregator, AttentionRule, ConditionEncoder, DenoisingSchedule, Planner, Verifier, component_config
from ..types import Plan, Request


def _fail(kind: str, component: Any, rule: str) -> AssertionError:
    return AssertionError(f"{kind} {type(component).__name__}: {rule}")


def _snapshot(conditions: ConditionSet) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    return [(s.name, s.tokens.detach().clone(), s.position_ids.detach().clone()) for s in conditions]


def _same_streams(a: ConditionSet, b: ConditionSet, atol: float = 0.0) -> bool:
    if [s.name for s in a] != [s.name for s in b]:
        return False
    for x, y in zip(a, b):
        if x.side != y.side or x.tokens.shape != y.tokens.shape:
            return False
        if not torch.allclose(x.tokens.float(), y.tokens.float(), atol=atol, rtol=0):
            return False
    if (a.pooled is None) != (b.pooled is None):
        return False
    return a.pooled is None or torch.allclose(a.pooled.float(), b.pooled.float(), atol=atol, rtol=0)


def _check_config(kind: str, component: Any) -> None:
    config = component_config(component)
    try:
        json.dumps(config)
    except TypeError as exc:
        raise _fail(kind, component, f"its config is not JSON-serialisable ({exc}); save_pretrained would fail") from exc
    try:
        pickle.dumps(config)
    except Exception as exc:  # noqa: BLE001 - any pickling failure breaks the contract
        raise _fail(kind, component, f"its config cannot be pickled ({exc})") from exc


def _check_declared(kind: str, component: Any, before: ConditionSet, after: ConditionSet) -> None:
    """What the component did agrees with what it declares (``makes_streams``, ``drops_streams``,
    ``writes_meta``; undeclared attributes are not checked), so compose-time checks can trust it."""
    old = {s.name for s in before}
    new = {s.name for s in after}
    for attr, streams in (("makes_streams", [s for s in after if s.name not in old]),
                          ("drops_streams", [s for s in before if s.name not in new])):
        specs = declared_streams(component, attr)
        for stream in streams if specs is not None else []:
            if not any(spec.covers(StreamSpec(stream.name, stream.side)) for spec in specs):
                verb = "made" if attr == "makes_streams" else "removed"
                raise _fail(kind, component, f"{verb} {stream.side} stream {stream.name!r}, which its {attr} "
                                             f"{tuple(s.describe() for s in specs)} does not declare")
    keys = declared_keys(component, "writes_meta")
    written = sorted(k for k in after.meta if k not in before.meta or after.meta[k] is not before.meta[k])
    undeclared = [k for k in written if keys is not None and k not in keys]
    if undeclared:
        raise _fail(kind, component, f"wrote meta[{undeclared[0]!r}], which its writes_meta {keys} does not declare")


def _roundtrip_module(kind: str, component: Any, rerun) -> None:
    """Save the state dict as safetensors, load it into a deep copy, and compare outputs."""
    if not isinstance(component, torch.nn.Module):
        return
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().contiguous().cpu() for k, v in component.state_dict().items()}
    if not state:
        return
    clone = copy.deepcopy(component)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)  # make sure the reload, not the copy, restores the weights
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "weights.safetensors"
        save_file(state, str(file))
        clone.load_state_dict(load_file(str(file)), strict=True)
    if not rerun(component, clone):
        raise _fail(kind, component, "after a safetensors save/load round trip its output differs")


def check_encoder(encoder: ConditionEncoder, backend: Any, request: Request) -> ConditionSet:
    """Encoders: a ConditionSet of valid streams, batch 1, deterministic, request untouched."""
    if not isinstance(encoder, ConditionEncoder):
        raise _fail("encoder", encoder, "must subclass smg_sdk.ConditionEncoder")
    before = [(s.class_word, s.pil().tobytes()) for s in request.subjects]
    prompt = request.prompt
    with torch.no_grad():
        first = encoder.encode(request, backend)
        second = encoder.encode(request, backend)
    if not isinstance(first, ConditionSet):
        raise _fail("encoder", encoder, f"encode() returned {type(first).__name__}, not a ConditionSet")
    for stream in first:
        if stream.tokens.shape[0] != 1:
            raise _fail("encoder", encoder, f"stream {stream.name!r} has batch {stream.tokens.shape[0]}; encoders emit batch 1")
        if not torch.isfinite(stream.tokens).all():
            raise _fail("encoder", encoder, f"stream {stream.name!r} has non-finite values")
        if stream.side == "text" and stream.tokens.shape[-1] != getattr(backend, "text_width", stream.tokens.shape[-1]):
            raise _fail("encoder", encoder, f"text stream {stream.name!r} is not the backend's text width")
    if not _same_streams(first, second, atol=1e-6):
        raise _fail("encoder", encoder, "two encodings of the same request differ (not deterministic)")
    if request.prompt != prompt or [(s.class_word, s.pil().tobytes()) for s in request.subjects] != before:
        raise _fail("encoder", encoder, "encode() modified the request or its subjects")
    _check_declared("encoder", encoder, ConditionSet(), first)
    _check_config("encoder", encoder)
    _roundtrip_module("encoder", encoder, lambda a, b: _same_streams(a.encode(request, backend),
                                                                     b.encode(request, backend), atol=1e-6))
    return first


def check_aggregator(aggregator: Aggregator, conditions: ConditionSet, request: Request | None = None) -> ConditionSet:
    """Aggregators: a new ConditionSet, inputs unmodified, deterministic, weights round-trip."""
    if not isinstance(aggregator, Aggregator):
        raise _fail("aggregator", aggregator, "must subclass smg_sdk.Aggregator")
    snapshot = _snapshot(conditions)
    meta_keys = sorted(conditions.meta)
    was_training = getattr(aggregator, "training", None)
    if isinstance(aggregator, torch.nn.Module):
        aggregator.eval()
    with torch.no_grad():
        first = aggregator.aggregate(conditions, request)
        second = aggregator.aggregate(conditions, request)
    if not isinstance(first, ConditionSet):
        raise _fail("aggregator", aggregator, f"aggregate() returned {type(first).__name__}, not a ConditionSet")
    if first is conditions:
        raise _fail("aggregator", aggregator, "aggregate() must return a new ConditionSet, not its input")
    after = _snapshot(conditions)
    if [n for n, _, _ in after] != [n for n, _, _ in snapshot] or any(
        not torch.equal(t0, t1) or not torch.equal(p0, p1) for (_, t0, p0), (_, t1, p1) in zip(snapshot, after)
    ) or sorted(conditions.meta) != meta_keys:
        raise _fail("aggregator", aggregator, "aggregate() modified its input condition set")
    if not _same_streams(first, second, atol=1e-6):
        raise _fail("aggregator", aggregator, "two runs on the same input differ (not deterministic in eval mode)")
    for stream in first:
        if stream.side != "raw" and stream.tokens.ndim != 3:
            raise _fail("aggregator", aggregator, f"stream {stream.name!r} is not (batch, length, width)")
    _check_declared("aggregator", aggregator, conditions, first)
    _check_config("aggregator", aggregator)
    with torch.no_grad():
        _roundtrip_module("aggregator", aggregator, lambda a, b: _same_streams(
            a.aggregate(conditions, request), b.aggregate(conditions, request), atol=1e-6))
    if was_training:
        aggregator.train()
    return first


def check_rule(rule: AttentionRule, conditions: ConditionSet, request: Request | None = None,
               image_tokens: int = 16, seed: int = 0) -> JointAttentionMask:
    """Rules: never unblock a pair, keep shapes, add only finite bias, deterministic, inputs untouched,
    and the same mask whether kept as edits (the block path) or as dense tensors."""
    if not isinstance(rule, AttentionRule):
        raise _fail("rule", rule, "must subclass smg_sdk.AttentionRule")
    batch = int(conditions.streams[0].tokens.shape[0]) if conditions.streams else 1
    layout = JointLayout.build(conditions, image_tokens)
    mask = JointAttentionMask(layout, batch)
    generator = torch.Generator().manual_seed(seed)
    pre_blocked = torch.rand(mask.allowed.shape, generator=generator) < 0.2
    mask.allowed &= ~pre_blocked
    snapshot = _snapshot(conditions)
    twin = mask.copy()
    rule.apply(mask, conditions, request)
    rule.apply(twin, conditions, request)
    if mask.allowed.shape != pre_blocked.shape or mask.bias.shape != pre_blocked.shape:
        raise _fail("rule", rule, "changed the mask's shape")
    if bool((mask.allowed & pre_blocked).any()):
        raise _fail("rule", rule, "unblocked a pair that was blocked before it ran")
    if not torch.isfinite(mask.bias).all():
        raise _fail("rule", rule, "added a non-finite bias; use block() to forbid pairs")
    if not torch.equal(mask.allowed, twin.allowed) or not torch.equal(mask.bias, twin.bias):
        raise _fail("rule", rule, "two applications to the same mask differ (not deterministic)")
    if any(not torch.equal(t0, s.tokens) for (_, t0, _), s in zip(snapshot, conditions)):
        raise _fail("rule", rule, "modified the condition streams")
    _check_block_path(rule, layout, batch, conditions, request)
    _check_config("rule", rule)
    return mask


def _check_block_path(rule: AttentionRule, layout: JointLayout, batch: int, conditions: ConditionSet,
                      request: Request | None) -> None:
    """The rule gives the same mask kept as edits (the sampler's block path) as on the dense view."""
    structured, dense = JointAttentionMask(layout, batch), JointAttentionMask(layout, batch)
    _ = dense.allowed  # dense mode
    rule.apply(structured, conditions, request)
    rule.apply(dense, conditions, request)
    (a, b), (c, d) = structured.materialize(), dense.materialize()
    if not torch.equal(a, c) or not torch.equal(b, d):
        raise _fail("rule", rule, "gives a different mask through its edits than on the dense allowed/bias view")


def check_schedule(schedule: DenoisingSchedule, conditions: ConditionSet, num_steps: Sequence[int] = (1, 4, 28)) -> None:
    """Schedules: finite weights >= 0 for known streams at every step; sane sigmas; deterministic."""
    if not isinstance(schedule, DenoisingSchedule):
        raise _fail("schedule", schedule, "must subclass smg_sdk.DenoisingSchedule")
    names = {s.name for s in conditions}
    for n in num_steps:
        sigmas = schedule.sigmas(n)
        if sigmas is not None:
            values = [float(x) for x in sigmas]
            if len(values) != n or any(not (0 < v <= 1) for v in values) or values != sorted(values, reverse=True):
                raise _fail("schedule", schedule, f"sigmas({n}) must be {n} values in (0, 1], decreasing")
        for step in range(n):
            weights = schedule.stream_weights(step, n, conditions)
            if weights != schedule.stream_weights(step, n, conditions):
                raise _fail("schedule", schedule, "stream_weights is not deterministic")
            for name, w in weights.items():
                if name not in names:
                    raise _fail("schedule", schedule, f"weights name stream {name!r}, which is not in the conditions")
                if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                    raise _fail("schedule", schedule, f"weight {w!r} for {name!r} at step {step}/{n} is not finite >= 0")
    _check_config("schedule", schedule)


def check_planner(planner: Planner, request: Request, num_plans: int = 3, seed: int = 0) -> list[Plan]:
    """Planners: the asked number of Plans, layouts naming only existing subjects, reproducible by seed."""
    if not isinstance(planner, Planner):
        raise _fail("planner", planner, "must subclass smg_sdk.Planner")
    first = planner.plan(request, num_plans, torch.Generator().manual_seed(seed))
    second = planner.plan(request, num_plans, torch.Generator().manual_seed(seed))
    if len(first) != num_plans or not all(isinstance(p, Plan) for p in first):
        raise _fail("planner", planner, f"plan() must return {num_plans} Plan objects")
    for plan in first:
        if plan.layout is not None and int(plan.layout.max()) > len(request.subjects):
            raise _fail("planner", planner, "a layout names a subject the request does not have")
    for a, b in zip(first, second):
        same_layout = (a.layout is None and b.layout is None) or (
            a.layout is not None and b.layout is not None and torch.equal(a.layout, b.layout))
        if a.cot != b.cot or a.prompt != b.prompt or not same_layout:
            raise _fail("planner", planner, "plans differ under the same generator seed")
    _check_config("planner", planner)
    return first


def check_verifier(verifier: Verifier, images: Sequence[Image.Image], request: Request) -> list[float]:
    """Verifiers: one finite score per image, deterministic, images untouched."""
    if not isinstance(verifier, Verifier):
        raise _fail("verifier", verifier, "must subclass smg_sdk.Verifier")
    before = [im.tobytes() for im in images]
    first = [float(s) for s in verifier.score(list(images), request)]
    second = [float(s) for s in verifier.score(list(images), request)]
    if len(first) != len(images) or not all(math.isfinite(s) for s in first):
        raise _fail("verifier", verifier, "must return one finite score per image")
    if first != second:
        raise _fail("verifier", verifier, "scores differ between two runs")
    if [im.tobytes() for im in images] != before:
        raise _fail("verifier", verifier, "modified the images it scored")
    _check_config("verifier", verifier)
    return first
