"""Joint attention layout and mask: group order, shapes, and rule composition.

The composition property checks the mask against a small independent model (plain slicing
over the layout's spans) after every operation, and that blocking is monotone: a pair
blocked once stays blocked whatever runs later.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smg_sdk.attention import BlockRule, IsolateReferencesRule, JointAttentionMask, JointLayout, StreamBiasRule
from smg_sdk.attention.masks import isolate_independent_streams
from smg_sdk.conditions import ConditionSet, ConditionStream
from smg_sdk.errors import AttentionRuleError, SMGError
from smg_sdk.backends.flux.positions import grid_ids, text_ids

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXT_D, REF_D = 8, 4


def text_stream(name, length, batch=1, subject=None, independent=False):
    return ConditionStream(
        name, torch.randn(batch, length, TEXT_D), text_ids(length), "text", subject=subject, independent=independent
    )


def ref_stream(name, length, batch=1, subject=None, mode="concat", independent=None):
    independent = (mode == "cached") if independent is None else independent
    return ConditionStream(
        name,
        torch.randn(batch, length, REF_D),
        grid_ids(1, length, col_offset=-length) if length else torch.zeros(0, 3),
        "reference",
        subject=subject,
        mode=mode,
        independent=independent,
    )


def raw_stream(name):
    return ConditionStream(name, torch.randn(2, 3, 5, 7), torch.zeros(0), "raw")


# --------------------------------------------------------------------------- strategies

NAMES = ["prompt", "mllm", "ref_0", "ref_1", "redux", "s*", "a", "b-2", "cot text", "Image", "x" * 20]


@st.composite
def stream_specs(draw, min_size=0, max_size=6):
    n = draw(st.integers(min_size, max_size))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n, unique=True))
    specs = []
    for name in names:
        kind = draw(st.sampled_from(["text", "concat", "cached", "raw"]))
        specs.append(
            dict(
                name=name,
                kind=kind,
                length=draw(st.integers(0, 4)),
                subject=draw(st.one_of(st.none(), st.integers(0, 3))),
                independent=True if kind == "cached" else draw(st.booleans()),
            )
        )
    return specs


def build_set(specs, batch=1) -> ConditionSet:
    streams = []
    for s in specs:
        if s["kind"] == "text":
            streams.append(text_stream(s["name"], s["length"], batch, s["subject"], s["independent"]))
        elif s["kind"] == "raw":
            streams.append(raw_stream(s["name"]))
        else:
            streams.append(ref_stream(s["name"], s["length"], batch, s["subject"], s["kind"], s["independent"]))
    return ConditionSet(streams)


# --------------------------------------------------------------------------- layout


@given(specs=stream_specs(), image_tokens=st.integers(1, 6))
@SETTINGS
def test_layout_groups_are_contiguous_and_ordered(specs, image_tokens):
    layout = JointLayout.build(build_set(specs), image_tokens)
    expected = (
        [(s["name"], "text", s["length"], True) for s in specs if s["kind"] == "text"]
        + [("image", "image", image_tokens, True)]
        + [(s["name"], "reference", s["length"], True) for s in specs if s["kind"] == "concat"]
        + [(s["name"], "reference", s["length"], False) for s in specs if s["kind"] == "cached"]
    )
    assert [(g.name, g.kind, g.length, g.is_query) for g in layout.groups] == expected
    pos = 0
    for g in layout.groups:
        assert g.start == pos and g.stop == pos + g.length and g.span == slice(g.start, g.stop)
        pos = g.stop
    by_name = {s["name"]: s for s in specs}
    for g in layout.groups:
        if g.name != "image":
            assert g.subject == by_name[g.name]["subject"]
    cached = sum(s["length"] for s in specs if s["kind"] == "cached")
    assert layout.num_keys == pos
    assert layout.num_queries == pos - cached
    assert layout.text_length == sum(s["length"] for s in specs if s["kind"] == "text")
    # queries come first: every query group ends before the first cached group starts
    assert all(g.stop <= layout.num_queries for g in layout.groups if g.is_query)
    for g in layout.groups:
        qm = layout.query_mask(g.name)
        assert qm.shape == (layout.num_queries,)
        assert int(qm.sum()) == (g.length if g.is_query else 0)
        if g.is_query:
            assert bool(qm[g.span].all())


@given(specs=stream_specs(), image_tokens=st.integers(1, 6), batch=st.integers(1, 3))
@SETTINGS
def test_mask_shapes_and_trivial_additive(specs, image_tokens, batch):
    layout = JointLayout.build(build_set(specs, batch), image_tokens)
    mask = JointAttentionMask(layout, batch)
    assert mask.allowed.shape == (batch, layout.num_queries, layout.num_keys)
    assert mask.bias.shape == (batch, layout.num_queries, layout.num_keys)
    assert mask.allowed.dtype == torch.bool and bool(mask.allowed.all())
    assert mask.is_trivial and mask.additive() is None
    mask.add_bias(queries="*", keys="image", value=0.5)
    out = mask.additive(dtype=torch.float64)
    assert out.shape == (batch, 1, layout.num_queries, layout.num_keys) and out.dtype == torch.float64


def test_stream_named_image_is_rejected():
    conditions = ConditionSet([text_stream("image", 2)])
    with pytest.raises(AttentionRuleError):
        JointLayout.build(conditions, 4)


def test_copy_is_independent():
    layout = JointLayout.build(ConditionSet([text_stream("prompt", 3), ref_stream("ref", 2)]), 4)
    mask = JointAttentionMask(layout, 2)
    other = mask.copy()
    other.block(queries="image", keys="ref")
    other.add_bias(queries="*", keys="prompt", value=1.0)
    assert mask.is_trivial and not other.is_trivial


# --------------------------------------------------------------------------- rule composition


class Model:
    """An independent re-statement of what each mask operation should do."""

    def __init__(self, layout: JointLayout, batch: int):
        self.layout = layout
        self.allowed = torch.ones(batch, layout.num_queries, layout.num_keys, dtype=torch.bool)
        self.bias = torch.zeros(batch, layout.num_queries, layout.num_keys)

    def sel(self, selector):
        groups = self.layout.groups
        if selector == "*":
            return list(groups)
        if selector.startswith("kind:"):
            return [g for g in groups if g.kind == selector[5:]]
        return [g for g in groups if g.name == selector]  # absent names select nothing (rules skip them)

    def block(self, q, k, rows=None):
        for qg in self.sel(q):
            if not qg.is_query:
                continue
            for kg in self.sel(k):
                if rows is None:
                    self.allowed[:, qg.span, kg.span] = False
                else:  # rows: (B, qg.length) bool of the query tokens to block
                    block = rows[:, :, None].expand(-1, -1, kg.length)
                    view = self.allowed[:, qg.span, kg.span]
                    self.allowed[:, qg.span, kg.span] = view & ~block

    def add(self, k, value, q="*"):
        for qg in self.sel(q):
            if not qg.is_query:
                continue
            for kg in self.sel(k):
                self.bias[:, qg.span, kg.span] += value


@st.composite
def scenario(draw):
    specs = draw(stream_specs(min_size=1, max_size=5))
    batch = draw(st.integers(1, 3))
    image_tokens = draw(st.integers(1, 5))
    conditions = build_set(specs, batch)
    layout = JointLayout.build(conditions, image_tokens)
    group_names = [g.name for g in layout.groups]
    selector = st.sampled_from(group_names + ["kind:text", "kind:image", "kind:reference", "*", "not-a-stream"])
    query_groups = [g for g in layout.groups if g.is_query]
    op = st.one_of(
        st.tuples(st.just("block"), selector, selector),
        st.tuples(st.just("isolate")),
        st.tuples(st.just("bias"), selector, st.floats(-4, 4, allow_nan=False), selector),
        st.tuples(
            st.just("restrict"),
            selector.filter(lambda s: s != "not-a-stream"),
            st.sampled_from(query_groups),
            st.booleans(),  # 2-D (per batch) region or 1-D
            st.randoms(use_true_random=False),
        ),
        st.tuples(
            st.just("weights"),
            st.dictionaries(
                st.sampled_from(group_names + ["not-a-stream"]),
                st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0]),
                max_size=3,
            ),
        ),
    )
    ops = draw(st.lists(op, min_size=1, max_size=8))
    return conditions, layout, batch, ops


def _apply(op, mask: JointAttentionMask, model: Model, conditions):
    kind = op[0]
    if kind == "block":
        _, q, k = op
        BlockRule(q, k).apply(mask, conditions, None)
        model.block(q, k)
    elif kind == "isolate":
        IsolateReferencesRule().apply(mask, conditions, None)
        refs = [g.name for g in mask.layout.groups if g.kind == "reference"]
        for a in refs:
            for b in refs:
                if a != b:
                    model.block(a, b)
    elif kind == "bias":
        _, k, value, q = op
        StreamBiasRule(k, value, q).apply(mask, conditions, None)
        model.add(k, value, q)
    elif kind == "restrict":
        _, keys, qg, two_d, rnd = op
        b = mask.batch_size
        if two_d:
            region = torch.tensor([[rnd.random() < 0.5 for _ in range(qg.length)] for _ in range(b)], dtype=torch.bool)
        else:
            region = torch.tensor([rnd.random() < 0.5 for _ in range(qg.length)], dtype=torch.bool)
        mask.restrict_keys(queries=qg.name, keys=keys, query_tokens=region)
        rows = ~region if two_d else (~region)[None].expand(b, -1)
        model.block(qg.name, keys, rows=rows.reshape(b, qg.length))
    elif kind == "weights":
        _, weights = op
        mask.apply_stream_weights(weights)
        for name, w in weights.items():
            if name not in mask.layout._by_name or w == 1:
                continue
            for other in mask.layout.groups:
                if other.name == name or not other.is_query:
                    continue
                if w == 0:
                    model.block(other.name, name)
                else:
                    model.add(name, math.log(w), other.name)
    else:  # pragma: no cover
        raise AssertionError(kind)


@given(data=scenario())
@settings(SETTINGS, max_examples=300)
def test_rule_composition_is_monotone_and_additive_is_exact(data):
    conditions, layout, batch, ops = data
    mask = JointAttentionMask(layout, batch)
    model = Model(layout, batch)
    for op in ops:
        before = mask.allowed.clone()
        _apply(op, mask, model, conditions)
        assert not bool((mask.allowed & ~before).any()), f"{op[0]} unblocked a pair"
        assert torch.equal(mask.allowed, model.allowed), f"allowed differs after {op[0]}"
        assert torch.allclose(mask.bias, model.bias, atol=1e-5), f"bias differs after {op[0]}"

    empty = ~mask.allowed.any(dim=-1)
    if mask.is_trivial:
        event("trivial mask")
        assert mask.additive() is None
        return
    if bool(empty.any()):
        event("a query row is fully blocked")
        with pytest.raises(AttentionRuleError) as info:
            mask.additive()
        b, q = (int(i) for i in empty.nonzero()[0])
        group = next(g for g in layout.groups if g.is_query and g.start <= q < g.stop)
        message = str(info.value)
        assert repr(group.name) in message and "\n" not in message
        return
    event("additive checked")
    out = mask.additive()
    assert out.shape == (batch, 1, layout.num_queries, layout.num_keys)
    out = out[:, 0]
    assert bool(torch.isneginf(out[~mask.allowed]).all())
    assert torch.equal(out[mask.allowed], mask.bias[mask.allowed])
    assert torch.allclose(out[model.allowed], model.bias[model.allowed], atol=1e-5)
    assert bool(torch.isfinite(out[mask.allowed]).all())


def test_fully_blocked_query_row_names_its_group():
    conditions = ConditionSet([text_stream("prompt", 2), ref_stream("ref", 3)])
    mask = JointAttentionMask(JointLayout.build(conditions, 4))
    BlockRule("prompt", "*").apply(mask, conditions, None)
    with pytest.raises(AttentionRuleError, match="'prompt'"):
        mask.additive()


def test_block_rule_skips_absent_streams_but_mask_block_does_not():
    conditions = ConditionSet([text_stream("prompt", 2)])
    mask = JointAttentionMask(JointLayout.build(conditions, 4))
    BlockRule("image", "missing").apply(mask, conditions, None)
    StreamBiasRule("missing", 1.0).apply(mask, conditions, None)
    assert mask.is_trivial
    for call in (
        lambda: mask.block(queries="image", keys="missing"),
        lambda: mask.block(queries="missing", keys="image"),
        lambda: mask.add_bias(queries="*", keys="missing", value=1.0),
        lambda: mask.restrict_keys(queries="image", keys="missing", query_tokens=torch.ones(4, dtype=torch.bool)),
    ):
        with pytest.raises(AttentionRuleError) as info:
            call()
        assert isinstance(info.value, SMGError) and "missing" in str(info.value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_bias_is_refused_and_leaves_the_mask_untouched(value):
    # 0 * inf would otherwise turn every unselected pair into NaN
    conditions = ConditionSet([text_stream("prompt", 2), ref_stream("ref", 2)])
    mask = JointAttentionMask(JointLayout.build(conditions, 2))
    with pytest.raises(AttentionRuleError):
        StreamBiasRule("ref", value, queries="image").apply(mask, conditions, None)
    assert mask.is_trivial and not bool(mask.bias.isnan().any())


def test_token_masks_of_the_wrong_length_are_refused():
    conditions = ConditionSet([text_stream("prompt", 3), ref_stream("ref", 2)])
    mask = JointAttentionMask(JointLayout.build(conditions, 4))
    with pytest.raises(AttentionRuleError):
        mask.block(queries="image", keys="ref", query_tokens=torch.ones(3, dtype=torch.bool))
    with pytest.raises(AttentionRuleError):
        mask.block(queries="image", keys="ref", key_tokens=torch.ones(3, dtype=torch.bool))
    with pytest.raises(AttentionRuleError):
        mask.restrict_keys(queries="image", keys="ref", query_tokens=torch.ones(5, dtype=torch.bool))


def test_block_with_key_tokens_blocks_only_those_keys():
    conditions = ConditionSet([text_stream("prompt", 3), ref_stream("ref", 3)])
    layout = JointLayout.build(conditions, 2)
    mask = JointAttentionMask(layout)
    mask.block(queries="image", keys="prompt", key_tokens=torch.tensor([True, False, True]))
    img, prompt = layout.group("image"), layout.group("prompt")
    assert mask.allowed[0, img.span, prompt.span].tolist() == [[False, True, False]] * 2
    assert int((~mask.allowed).sum()) == 4


# --------------------------------------------------------------------------- per-row token masks


def _bool_rows(batch: int, length: int):
    return st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=batch, max_size=batch)


@st.composite
def per_row_case(draw):
    specs = draw(stream_specs(min_size=1, max_size=4))
    batch = draw(st.integers(1, 3))
    layout = JointLayout.build(build_set(specs, batch), draw(st.integers(1, 4)))
    qg = draw(st.sampled_from([g for g in layout.groups if g.is_query]))
    kg = draw(st.sampled_from(layout.groups))
    q_rows = torch.tensor(draw(_bool_rows(batch, qg.length)), dtype=torch.bool).reshape(batch, qg.length)
    k_rows = torch.tensor(draw(_bool_rows(batch, kg.length)), dtype=torch.bool).reshape(batch, kg.length)
    op = draw(st.sampled_from(["block", "restrict", "bias"]))
    value = draw(st.floats(-4, 4, allow_nan=False).filter(lambda v: v != 0))
    return layout, batch, qg, kg, q_rows, k_rows, op, value


def _per_row_op(mask, op, qg, kg, q_tokens, k_tokens, value):
    if op == "block":
        mask.block(queries=qg.name, keys=kg.name, query_tokens=q_tokens, key_tokens=k_tokens)
    elif op == "restrict":
        mask.restrict_keys(queries=qg.name, keys=kg.name, query_tokens=q_tokens, key_tokens=k_tokens)
    else:
        mask.add_bias(queries=qg.name, keys=kg.name, value=value, query_tokens=q_tokens, key_tokens=k_tokens)


@given(case=per_row_case())
@SETTINGS
def test_per_row_token_masks_act_only_on_their_rows(case):
    layout, batch, qg, kg, q_rows, k_rows, op, value = case
    mask = JointAttentionMask(layout, batch)
    _per_row_op(mask, op, qg, kg, q_rows, k_rows, value)
    # an element-wise statement of each operation: row b of the token masks decides batch row b alone
    expected_allowed = torch.ones_like(mask.allowed)
    expected_bias = torch.zeros_like(mask.bias)
    for b in range(batch):
        for i in range(qg.length):
            for j in range(kg.length):
                q, k = qg.start + i, kg.start + j
                if op == "block" and q_rows[b, i] and k_rows[b, j]:
                    expected_allowed[b, q, k] = False
                elif op == "restrict" and not q_rows[b, i] and k_rows[b, j]:
                    expected_allowed[b, q, k] = False
                elif op == "bias" and q_rows[b, i] and k_rows[b, j]:
                    expected_bias[b, q, k] = value
    assert torch.equal(mask.allowed, expected_allowed)
    assert torch.equal(mask.bias, expected_bias)
    # the same as applying each row's masks to a one-row mask over the same layout
    for b in range(batch):
        single = JointAttentionMask(layout, 1)
        _per_row_op(single, op, qg, kg, q_rows[b], k_rows[b], value)
        assert torch.equal(single.allowed[0], mask.allowed[b]) and torch.equal(single.bias[0], mask.bias[b])


@given(case=per_row_case())
@SETTINGS
def test_one_row_token_masks_mean_every_row_as_before(case):
    layout, batch, qg, kg, q_rows, k_rows, op, value = case
    shared, expanded, listed = (JointAttentionMask(layout, batch) for _ in range(3))
    q, k = q_rows[0], k_rows[0]
    _per_row_op(shared, op, qg, kg, q, k, value)
    _per_row_op(expanded, op, qg, kg, q.expand(batch, -1), k.expand(batch, -1), value)
    _per_row_op(listed, op, qg, kg, [q] * batch, [k] * batch, value)
    for other in (expanded, listed):
        assert torch.equal(shared.allowed, other.allowed) and torch.equal(shared.bias, other.bias)
    for b in range(1, batch):
        assert torch.equal(shared.allowed[b], shared.allowed[0]) and torch.equal(shared.bias[b], shared.bias[0])


def test_token_masks_of_the_wrong_batch_size_are_refused_by_name():
    conditions = ConditionSet([text_stream("prompt", 3, batch=2), ref_stream("ref", 2, batch=2)])
    mask = JointAttentionMask(JointLayout.build(conditions, 4), 2)
    calls = {
        "query_tokens": lambda: mask.block(queries="image", keys="ref",
                                           query_tokens=torch.ones(3, 4, dtype=torch.bool)),
        "key_tokens": lambda: mask.add_bias(queries="image", keys="ref", value=1.0,
                                            key_tokens=torch.ones(1, 2, 2, dtype=torch.bool)),
    }
    for argument, call in calls.items():
        with pytest.raises(AttentionRuleError) as info:
            call()
        assert argument in str(info.value) and "(2, " in str(info.value)
    assert mask.is_trivial


def test_mask_methods_take_keyword_arguments_only():
    mask = JointAttentionMask(JointLayout.build(ConditionSet([ref_stream("ref", 2)]), 4))
    with pytest.raises(TypeError):
        mask.block("image", "ref")  # type: ignore[misc]
    with pytest.raises(TypeError):
        mask.add_bias("ref", 1.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        mask.restrict_keys("ref", "image", torch.ones(4, dtype=torch.bool))  # type: ignore[misc]
    assert mask.is_trivial


# --------------------------------------------------------------------------- independent streams


@given(specs=stream_specs(min_size=1), image_tokens=st.integers(1, 4), batch=st.integers(1, 2))
@SETTINGS
def test_isolate_independent_streams(specs, image_tokens, batch):
    conditions = build_set(specs, batch)
    layout = JointLayout.build(conditions, image_tokens)
    mask = JointAttentionMask(layout, batch)
    isolate_independent_streams(mask, conditions)
    independent = {
        s["name"] for s in specs if s["independent"] and s["kind"] in ("text", "concat")
    }  # cached ones are not queries here; raw ones are not in the layout
    for qg in layout.groups:
        if not qg.is_query:
            continue
        for kg in layout.groups:
            block = mask.allowed[:, qg.span, kg.span]
            if qg.name in independent:
                assert bool(block.all()) if kg.name == qg.name else not bool(block.any())
            else:
                assert bool(block.all()), "a non-independent stream lost keys"


def test_independent_concat_reference_sees_only_itself():
    conditions = ConditionSet(
        [text_stream("prompt", 3), ref_stream("ref", 2, independent=True), ref_stream("other", 2)]
    )
    layout = JointLayout.build(conditions, 4)
    mask = JointAttentionMask(layout)
    isolate_independent_streams(mask, conditions)
    ref = layout.group("ref")
    row = mask.allowed[0, ref.start]
    assert row.nonzero().flatten().tolist() == list(range(ref.start, ref.stop))
    # everyone else may still attend to the independent stream
    assert bool(mask.allowed[0, layout.group("image").span, ref.span].all())
    assert mask.additive()[0, 0, ref.start].isneginf().sum() == layout.num_keys - ref.length


# --------------------------------------------------------------------------- stream weights


def _weights_setup():
    conditions = ConditionSet(
        [
            text_stream("prompt", 3),
            ref_stream("concat_ref", 2),
            ref_stream("cached_ref", 2, mode="cached"),
        ]
    )
    layout = JointLayout.build(conditions, 4)
    return layout, JointAttentionMask(layout, 2)


def test_weight_zero_hides_a_cached_stream_from_every_query():
    layout, mask = _weights_setup()
    mask.apply_stream_weights({"cached_ref": 0.0})
    cached = layout.group("cached_ref")
    assert not bool(mask.allowed[:, :, cached.span].any())
    assert int((~mask.allowed).sum()) == 2 * layout.num_queries * cached.length


def test_weight_zero_hides_a_concat_stream_from_every_other_group():
    layout, mask = _weights_setup()
    mask.apply_stream_weights({"concat_ref": 0})
    ref = layout.group("concat_ref")
    for g in layout.groups:
        if g.is_query:
            seen = mask.allowed[:, g.span, ref.span]
            # the stream's own tokens keep attending to themselves (see apply_stream_weights)
            assert bool(seen.all()) if g.name == "concat_ref" else not bool(seen.any())
    assert mask.bias.abs().sum() == 0


@pytest.mark.parametrize("w", [0.25, 0.5, 2.0, 7.0])
def test_weight_w_adds_log_w_to_the_stream_keys(w):
    layout, mask = _weights_setup()
    mask.apply_stream_weights({"cached_ref": w, "prompt": 1.0})
    cached = layout.group("cached_ref")
    assert torch.allclose(mask.bias[:, :, cached.span], torch.full_like(mask.bias[:, :, cached.span], math.log(w)))
    assert mask.bias.abs().sum() == pytest.approx(abs(math.log(w)) * 2 * layout.num_queries * cached.length)
    assert bool(mask.allowed.all())
    out = mask.additive()
    assert torch.allclose(out[:, 0, :, cached.span], torch.tensor(math.log(w)))


def test_weight_one_and_unknown_streams_change_nothing():
    _, mask = _weights_setup()
    mask.apply_stream_weights({"prompt": 1.0, "concat_ref": 1, "not-here": 0.0})
    assert mask.is_trivial and mask.additive() is None


@pytest.mark.parametrize("w", [-1.0, float("nan"), float("inf")])
def test_bad_weights_raise(w):
    _, mask = _weights_setup()
    with pytest.raises(AttentionRuleError):
        mask.apply_stream_weights({"prompt": w})


# --------------------------------------------------------------------------- selectors


def test_selectors():
    conditions = ConditionSet(
        [
            ref_stream("r_cached", 1, mode="cached"),
            text_stream("t1", 2),
            ref_stream("r1", 1),
            text_stream("t2", 1),
            raw_stream("raw"),
        ]
    )
    layout = JointLayout.build(conditions, 3)
    names = lambda sel: [g.name for g in layout.select(sel)]  # noqa: E731
    assert names("kind:text") == ["t1", "t2"]
    assert names("kind:image") == ["image"]
    assert names("kind:reference") == ["r1", "r_cached"]
    assert names("*") == ["t1", "t2", "image", "r1", "r_cached"]
    assert names("r1") == ["r1"] and names("image") == ["image"]
    for bad in ("raw", "unknown", "kind:raw", "kind:", "T1"):
        with pytest.raises(AttentionRuleError) as info:
            layout.select(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(AttentionRuleError):
        layout.query_mask("unknown")
    assert not bool(layout.query_mask("r_cached").any())


def test_kind_selectors_in_rules():
    conditions = ConditionSet([text_stream("t1", 2), text_stream("t2", 2), ref_stream("r", 2)])
    layout = JointLayout.build(conditions, 2)
    mask = JointAttentionMask(layout)
    BlockRule("kind:text", "kind:reference").apply(mask, conditions, None)
    StreamBiasRule("kind:text", 1.5, queries="image").apply(mask, conditions, None)
    r, img = layout.group("r"), layout.group("image")
    for t in ("t1", "t2"):
        assert not bool(mask.allowed[0, layout.group(t).span, r.span].any())
        assert bool((mask.bias[0, img.span, layout.group(t).span] == 1.5).all())
    assert int((~mask.allowed).sum()) == 8
    assert float(mask.bias.sum()) == pytest.approx(1.5 * 2 * 4)
