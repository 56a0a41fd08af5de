"""Attention by group blocks equals attention with the dense mask of the same rules.

The property test draws random passes (text, concat and cached groups of random sizes,
batch 1-3) and random rule sets (whole-group and token-level blocks, key restrictions,
biases, per-batch token masks, stream isolation and schedule weights), applies them to a
structured mask and to a twin in dense mode, and checks: the same dense tensors, the same
error when a query is left with no key, and attention outputs within 1e-5 whatever the
dense-fallback threshold. Other tests check that block-structured rules build no
``queries x keys`` tensor, and that sampling does no per-step work that does not change.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smg_sdk.attention import IsolateReferencesRule, JointAttentionMask, JointLayout
from smg_sdk.attention.masks import isolate_independent_streams
from smg_sdk.attention.passes import build_attention_pass
from smg_sdk.backends.flux.positions import grid_ids, text_ids
from smg_sdk.backends.flux.processor import attend_blocks
from smg_sdk.conditions import ConditionSet, ConditionStream
from smg_sdk.errors import AttentionRuleError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADS, DIM = 2, 8


def stream(name, kind, length, batch, independent=False):
    if kind == "text":
        return ConditionStream(name, torch.zeros(batch, length, 4), text_ids(length), "text", independent=independent)
    ids = grid_ids(1, length, col_offset=-length) if length else torch.zeros(0, 3)
    return ConditionStream(name, torch.zeros(batch, length, 4), ids, "reference", mode=kind,
                           independent=True if kind == "cached" else independent)


@st.composite
def passes(draw):
    batch = draw(st.integers(1, 3))
    kinds = draw(st.lists(st.sampled_from(["text", "concat", "cached"]), min_size=1, max_size=5))
    streams = [stream(f"s{i}", k, draw(st.integers(0 if i else 1, 9)), batch, draw(st.booleans()))
               for i, k in enumerate(kinds)]
    if not any(s.side == "text" for s in streams):
        streams.insert(0, stream("prompt", "text", draw(st.integers(1, 6)), batch))
    conditions = ConditionSet(streams)
    layout = JointLayout.build(conditions, draw(st.integers(1, 24)))
    return conditions, layout, batch


def token_mask(draw, batch, length):
    """None, a shared ``(L,)`` mask, or one row per batch row ``(B, L)``."""
    shape = draw(st.sampled_from(["none", "shared", "rows"]))
    if shape == "none":
        return None
    rows = 1 if shape == "shared" else batch
    bits = draw(st.lists(st.booleans(), min_size=rows * length, max_size=rows * length))
    tokens = torch.tensor(bits, dtype=torch.bool).reshape(rows, length)
    return tokens[0] if shape == "shared" else tokens


@st.composite
def operations(draw, layout, batch):
    names = [g.name for g in layout.groups]
    selectors = names + ["*", "kind:text", "kind:reference", "image"]
    ops = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["block", "restrict", "bias", "isolate", "weights"]))
        if kind == "isolate":
            ops.append(("isolate",))
        elif kind == "weights":
            ops.append(("weights", {n: draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])) for n in names if n != "image"}))
        else:  # token masks only on single groups, whose lengths are known
            q, k = draw(st.sampled_from(selectors)), draw(st.sampled_from(selectors))
            qt = token_mask(draw, batch, layout.group(q).length) if q in names else None
            kt = token_mask(draw, batch, layout.group(k).length) if k in names else None
            if kind == "restrict" and q not in names:
                kind = "block"
            elif kind == "restrict" and qt is None:
                qt = torch.zeros(layout.group(q).length, dtype=torch.bool)
            ops.append((kind, q, k, qt, kt, draw(st.floats(-3, 3))))
    return ops


def apply(op, mask: JointAttentionMask, conditions) -> None:
    if op[0] == "isolate":
        IsolateReferencesRule().apply(mask, conditions, None)
    elif op[0] == "weights":
        mask.apply_stream_weights(op[1])
    elif op[0] == "block":
        mask.block(queries=op[1], keys=op[2], query_tokens=op[3], key_tokens=op[4])
    elif op[0] == "restrict":
        mask.restrict_keys(queries=op[1], keys=op[2], query_tokens=op[3], key_tokens=op[4])
    else:
        mask.add_bias(queries=op[1], keys=op[2], value=op[5], query_tokens=op[3], key_tokens=op[4])


def dense_attention(mask: JointAttentionMask, q, k, v):
    additive = mask.additive()
    return dispatch_attention_fn(q, k, v, attn_mask=additive)


@given(data=st.data())
@SETTINGS
def test_block_attention_equals_dense_mask(data):
    conditions, layout, batch = data.draw(passes())
    structured = JointAttentionMask(layout, batch)
    dense = JointAttentionMask(layout, batch)
    assert dense.allowed.all()  # reading the dense view switches the twin to dense mode
    for mask in (structured, dense):
        isolate_independent_streams(mask, conditions)
    for op in data.draw(operations(layout, batch)):
        for mask in (structured, dense):
            apply(op, mask, conditions)
    assert dense.is_dense and not structured.is_dense
    allowed, bias = structured.materialize()
    assert torch.equal(allowed, dense.allowed) and torch.equal(bias, dense.bias)
    assert structured.is_trivial == dense.is_trivial

    try:
        dense.additive()
    except AttentionRuleError as error:
        event("a query may attend to no key")
        for limit in (32, 0):
            with pytest.raises(AttentionRuleError) as info:
                structured.plan(max_patterns=limit)
            assert str(info.value) == str(error)
        return
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, layout.num_queries, HEADS, DIM, generator=gen)
    k = torch.randn(batch, layout.num_keys, HEADS, DIM, generator=gen)
    v = torch.randn(batch, layout.num_keys, HEADS, DIM, generator=gen)
    expected = dense_attention(dense, q, k, v)
    for limit in (32, 1, 0):
        plan = structured.plan(max_patterns=limit)
        out = attend_blocks(plan, q, k, v)
        assert out.shape == expected.shape
        assert torch.allclose(out, expected, atol=1e-5), (limit, plan.describe(), (out - expected).abs().max())
    plan = structured.plan()
    event(f"{len(plan.blocks)} calls" if len(plan.blocks) < 4 else "4+ calls")
    if all(op.rows is None for op in structured.ops):  # block-structured: no query-by-key tensor anywhere
        assert not plan.notes
        assert all(b.mask is None or b.mask.shape[-2] == 1 for b in plan.blocks)
    assert not structured.is_dense  # compiling never densifies


def test_dense_mode_and_group_fallback_are_named_in_the_plan():
    conditions = ConditionSet([stream("prompt", "text", 3, 1), stream("ref", "concat", 4, 1)])
    layout = JointLayout.build(conditions, 8)
    mask = JointAttentionMask(layout)
    mask.block(queries="image", keys="ref", query_tokens=torch.tensor([1, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool))
    mask.add_bias(queries="image", keys="prompt", value=0.5, query_tokens=torch.tensor([1, 1, 0, 0, 0, 0, 1, 0]).bool())
    assert "4 token patterns" in mask.plan(max_patterns=3).describe()
    assert "'image'" in mask.plan(max_patterns=3).describe()
    assert not mask.plan().notes
    mask.allowed[0, 0, -1] = False  # an in-place edit of the dense view sticks
    assert mask.is_dense and not bool(mask.additive()[0, 0, 0, -1].isfinite())
    assert "dense" in mask.plan().describe()


def test_block_structured_rules_build_no_query_by_key_tensor():
    """1024 px with 4 concat references (Q = K = 16,896 + text): the plan holds only key rows."""
    text, image, refs, batch = 512, 4096, 4, 2
    conditions = ConditionSet([stream("prompt", "text", text, batch)]
                              + [stream(f"ref{i}", "concat", image, batch, independent=i % 2 == 0) for i in range(refs)])
    attention = build_attention_pass(conditions, image, [IsolateReferencesRule()])
    plans = [attention.plan_at({}), attention.plan_at({"ref1": 0.0, "ref3": 0.5, "prompt": 2.0})]
    layout = attention.layout
    for plan in plans:
        held = sum(b.mask.numel() for b in plan.blocks if b.mask is not None)
        assert held <= batch * layout.num_keys * len(plan.blocks) < layout.num_queries * layout.num_keys // 100
        assert not plan.notes
    assert not plans[0].is_trivial
    # [prompt, image] see everything but the independent references: one unmasked call
    first = plans[0].blocks[0]
    assert first.queries == slice(0, text + image) and first.mask is None
    assert attention.plan_at({}) is plans[0]  # compiled once per distinct weights
    assert not attention.mask.is_dense


def test_bias_weights_use_one_key_row_per_group():
    conditions = ConditionSet([stream("prompt", "text", 2, 1), stream("ref", "cached", 3, 1)])
    attention = build_attention_pass(conditions, 4)
    plan = attention.plan_at({"ref": 0.25})
    (block,) = plan.blocks
    assert block.mask.shape == (1, 1, 1, attention.layout.num_keys)
    assert torch.allclose(block.mask[0, 0, 0, -3:], torch.full((3,), math.log(0.25)))
    assert attention.plan_at({"ref": 1.0}).is_trivial


def test_sampling_does_per_call_work_once_not_per_step(backend, images, monkeypatch):
    """device/dtype lookups, attention plans and adapter switching do not grow with the step count."""
    from collections import Counter

    from smg_sdk import Subject
    from smg_sdk.backends.flux import sampler
    from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
    from smg_sdk.pipeline import SubjectPipeline
    from smg_sdk.schedules import ConstantSchedule

    counts: Counter = Counter()
    cls = type(backend)

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in ("device", "dtype"):
        monkeypatch.setattr(cls, name, property(counting(name, getattr(cls, name).fget)))
    monkeypatch.setattr(JointAttentionMask, "plan", counting("plan", JointAttentionMask.plan))
    monkeypatch.setattr(sampler, "activate_adapters", counting("activate", sampler.activate_adapters))
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=4, init_lora_weights=False)
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode="concat", adapter="subject")],
                           schedule=ConstantSchedule(), encoding_cache=False)  # both calls encode
    pipe.set_progress_bar_config(disable=True)
    seen = []
    for steps in (1, 3):
        counts.clear()
        out = pipe("a photo of <1>", [Subject(images[0], "dog")], generator=torch.Generator().manual_seed(0),
                   num_inference_steps=steps, output_type="latent", height=64, width=64)
        assert len(out.trace) == steps
        assert out.batches[0].attention == ["positive {}: 2 attention call(s): 2 unmasked, 0 with a key-row mask, 0 dense"]
        seen.append(dict(counts))
    assert seen[0] == seen[1], seen
    assert seen[0]["plan"] == 1 and seen[0]["activate"] == 1
