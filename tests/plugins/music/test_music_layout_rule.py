"""music-layout: the joint attention mask follows the plan's grid at any output size, per batch row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smg_plugins.music.layout_rule import LayoutAttentionRule, resample_layout
from smg_sdk import ConditionSet, ConditionStream, Plan, Request, Subject
from smg_sdk.attention.masks import JointAttentionMask, JointLayout
from smg_sdk.errors import AttentionRuleError
from smg_sdk.backends.flux.positions import grid_ids, text_ids

from conftest import make_image

SIZES = [(64, 64), (128, 128), (96, 160), (256, 128), (48, 80)]
MULTIPLE = 16


def conditions(n_subjects: int, plans, mode: str = "concat", ref_tokens: int = 4) -> ConditionSet:
    batch = len(plans)
    streams = [ConditionStream("prompt", torch.zeros(batch, 5, 8), text_ids(5), side="text")]
    for k in range(n_subjects):
        streams.append(ConditionStream(f"ref{k + 1}", torch.zeros(batch, ref_tokens, 16), grid_ids(2, 2, axis0=k + 1),
                                       side="reference", subject=k, independent=True, mode=mode))
    return ConditionSet(streams, torch.zeros(batch, 4), {"plans": list(plans)})


def build_mask(rule, plans, n_subjects, height, width, mode="concat"):
    conds = conditions(n_subjects, plans, mode)
    request = Request("x", [Subject(make_image(k, 16)) for k in range(n_subjects)], height=height, width=width,
                      size_multiple=MULTIPLE)
    image_tokens = (height // MULTIPLE) * (width // MULTIPLE)
    mask = JointAttentionMask(JointLayout.build(conds, image_tokens), len(plans))
    rule.apply(mask, conds, request)
    return mask


def expected_ids(layout: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Independent nearest-centre resampling: token (i, j) reads the cell under its centre."""
    src_r, src_c = layout.shape
    out = np.zeros((rows, cols), dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = layout[math.floor((i + 0.5) * src_r / rows), math.floor((j + 0.5) * src_c / cols)]
    return out.reshape(-1)


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 4))
    rows, cols = draw(st.sampled_from([(8, 8), (4, 6), (10, 10)]))
    cells = draw(st.lists(st.integers(0, n), min_size=rows * cols, max_size=rows * cols))
    return n, np.array(cells, dtype=np.int64).reshape(rows, cols)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.sampled_from(SIZES), st.sampled_from(["concat", "cached"]))
def test_hard_mask_matches_grid_at_any_size(case, size, mode):
    n, layout = case
    height, width = size
    rule = LayoutAttentionRule(mode="hard", keep_small=False)
    mask = build_mask(rule, [Plan(layout=layout)], n, height, width, mode)
    ids = expected_ids(layout, height // MULTIPLE, width // MULTIPLE)
    image = mask.layout.group("image")
    for k in range(1, n + 1):
        ref = mask.layout.group(f"ref{k}")
        seen = mask.allowed[0, image.span, ref.span].all(dim=1).numpy()
        assert np.array_equal(seen, (ids == 0) | (ids == k)), (k, ids)
        assert not mask.allowed[0, image.span, ref.span][~torch.from_numpy(seen)].any()
    text = mask.layout.group("prompt")
    assert mask.allowed[0, text.span].all()  # only image -> reference pairs change
    assert not mask.bias.any()


def test_small_subjects_survive_downsampling():
    layout = torch.zeros(8, 8, dtype=torch.int64)
    layout[:, :4] = 1
    layout[:, 4:] = 2
    layout[0, 0] = 3  # one cell: lost at 4x4 without keep_small
    assert 3 not in resample_layout(layout, 4, 4, keep_small=False).unique().tolist()
    kept = resample_layout(layout, 4, 4)
    assert kept[0, 0] == 3 and {1, 2} <= set(kept.unique().tolist())


def test_soft_bias_background_and_per_row_plans():
    left = torch.zeros(8, 8, dtype=torch.int64)
    left[:, :4] = 1
    left[:, 4:6] = 2
    right = torch.flip(left, dims=[1])
    plans = [Plan(layout=left), Plan(layout=right)]
    rule = LayoutAttentionRule(mode="soft", bias=-3.0, background="soft", background_bias=-1.0, own_bias=0.5)
    soft = build_mask(rule, plans, 2, 128, 128)
    assert soft.allowed.all()
    image, ref1 = soft.layout.group("image"), soft.layout.group("ref1")
    ids = [expected_ids(p.layout.numpy(), 8, 8) for p in plans]
    for b in range(2):
        want = np.where(ids[b] == 1, 0.5, np.where(ids[b] == 0, -1.0, -3.0))
        assert np.allclose(soft.bias[b, image.span, ref1.start].numpy(), want)
    assert not torch.equal(soft.bias[0], soft.bias[1])  # each candidate follows its own plan

    none = build_mask(LayoutAttentionRule(background="none"), [Plan(layout=left), None], 2, 128, 128)
    empty = torch.from_numpy(ids[0] == 0)
    assert not none.allowed[0, image.span, ref1.span][empty].any()
    assert none.allowed[1].all()  # a row without a plan is untouched


def test_rule_validates_settings():
    with pytest.raises(AttentionRuleError):
        LayoutAttentionRule(mode="medium")
    with pytest.raises(AttentionRuleError):
        LayoutAttentionRule(background="maybe")
    with pytest.raises(AttentionRuleError):
        LayoutAttentionRule(bias=float("inf"))
