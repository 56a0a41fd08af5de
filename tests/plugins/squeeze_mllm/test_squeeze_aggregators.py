"""Squeeze-MLLM aggregators (LAP, DLA, baselines) and the multi-stage schedule."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_plugins.squeeze_mllm.pooling import (
    DualLayerAggregation,
    FixedLayers,
    LastLayer,
    LayerwiseAttentionPooling,
    LAPAggregator,
    fixed_layer_slots,
)
from smg_plugins.squeeze_mllm.schedule import MultiStageSchedule
from smg_sdk import ConditionSet, ConditionStream, ScheduleError

import pytest


def raw_set(features: torch.Tensor, modality: torch.Tensor, layers: list[int]) -> ConditionSet:
    raw = ConditionStream("mllm-raw", features, torch.zeros(features.shape[2], 3), side="raw",
                          meta={"modality": modality, "subject": torch.full_like(modality, -1), "layers": layers})
    return ConditionSet([raw], pooled=torch.zeros(features.shape[0], 8))


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3), total_layers=st.integers(3, 36), stride=st.integers(1, 6),
    tokens=st.integers(1, 12), refiner=st.integers(0, 2), seed=st.integers(0, 1000),
)
def test_lap_weights_sum_to_one_and_shapes(batch, total_layers, stride, tokens, refiner, seed):
    layers = list(range(stride, total_layers + 1, stride)) or [total_layers]
    torch.manual_seed(seed)
    lap = LayerwiseAttentionPooling(len(layers), 16, 24, refiner_layers=refiner, heads=4)
    features = torch.randn(batch, len(layers), tokens, 16)
    weights = lap.layer_weights(features)
    assert weights.shape == (batch, tokens, len(layers))
    assert torch.allclose(weights.sum(-1), torch.ones(batch, tokens), atol=1e-5)
    assert (weights >= 0).all()
    assert lap(features).shape == (batch, tokens, 24)


def test_lap_attention_is_learned_per_token():
    torch.manual_seed(0)
    lap = LayerwiseAttentionPooling(4, 16, 8, refiner_layers=0)
    features = torch.randn(1, 4, 5, 16)
    w = lap.layer_weights(features)
    assert not torch.allclose(w[0, 0], w[0, 1])  # different tokens pool layers differently


def test_dla_routes_text_and_image_to_different_branches():
    torch.manual_seed(0)
    dla = DualLayerAggregation(num_layers=3, in_dim=16, out_dim=8, refiner_layers=1)
    modality = torch.tensor([0, 0, 1, 1, 1, 0, 0])
    features = torch.randn(1, 3, 7, 16)
    text, image = dla.branches(features, modality)
    assert text.shape == (1, 4, 8) and image.shape == (1, 3, 8)
    perturbed = features.clone()
    perturbed[:, :, modality.bool()] += torch.randn_like(perturbed[:, :, modality.bool()])
    text2, image2 = dla.branches(perturbed, modality)
    assert torch.equal(text, text2)  # the text branch never sees image tokens
    assert not torch.allclose(image, image2)
    fused = dla.fuse(text, image, modality)
    assert torch.equal(fused[:, modality.bool()], image) and torch.equal(fused[:, ~modality.bool()], text)
    # and the text branch's weights are not the image branch's
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(dla.text_branch.parameters(), dla.image_branch.parameters()))


@pytest.mark.parametrize("make", [
    lambda: LAPAggregator(num_layers=3, in_dim=16, out_dim=8),
    lambda: DualLayerAggregation(num_layers=3, in_dim=16, out_dim=8),
    lambda: LastLayer(in_dim=16, out_dim=8),
    lambda: FixedLayers(in_dim=16, out_dim=8),
])
def test_aggregators_turn_raw_into_text_stream(make):
    aggregator = make()
    conditions = raw_set(torch.randn(2, 3, 6, 16), torch.tensor([0, 1, 1, 0, 0, 0]), [3, 6, 9])
    out = aggregator.aggregate(conditions, None)
    assert "mllm-raw" not in out and "mllm-raw" in conditions  # input untouched
    stream = out.get("mllm")
    assert stream.side == "text" and stream.tokens.shape == (2, 6, 8)
    assert stream.position_ids.shape == (6, 3)


def test_fixed_layer_slots():
    assert fixed_layer_slots([3, 6, 9, 12, 15, 18, 21, 24, 27, 30]) == [2, 6, 9]  # layers 9, 21, 30: nearest 10, 20, 30
    assert fixed_layer_slots([1, 2, 3]) == [0, 1, 2]


@settings(max_examples=50, deadline=None)
@given(steps=st.integers(1, 60), a=st.floats(0, 1), b=st.floats(0, 1), late=st.floats(0, 2))
def test_multistage_boundaries_respected(steps, a, b, late):
    lo, hi = sorted((a, b))
    schedule = MultiStageSchedule(semantic_until=lo, identity_from=hi, identity_semantic_weight=late)
    conditions = ConditionSet([
        ConditionStream("mllm", torch.zeros(1, 4, 8), torch.zeros(4, 3), side="text"),
        ConditionStream("ref1", torch.zeros(1, 4, 16), torch.zeros(4, 3), side="reference", independent=True),
    ])
    for step in range(steps):
        f = step / steps
        w = schedule.stream_weights(step, steps, conditions)
        if f < lo:
            assert w == {"mllm": 1.0, "ref1": 0.0}
        elif f < hi:
            assert w == {"mllm": 1.0, "ref1": 1.0}
        else:
            assert w == {"mllm": late, "ref1": 1.0}


@pytest.mark.parametrize("kwargs", [
    dict(semantic_until=0.8, identity_from=0.2), dict(semantic_until=-0.1), dict(identity_from=1.5),
    dict(identity_semantic_weight=-1.0), dict(identity_reference_weight=float("nan")),
])
def test_multistage_rejects_bad_parameters(kwargs):
    with pytest.raises(ScheduleError):
        MultiStageSchedule(**kwargs)


@pytest.mark.parametrize("name", ["lap", "dla", "last-layer", "fixed-layers"])
def test_squeeze_aggregators_pass_the_conformance_kit(name):
    from smg_sdk.plugins import get_registry
    from smg_sdk.testing import check_aggregator

    torch.manual_seed(0)
    aggregator = get_registry().build("aggregator", name, num_layers=3, in_dim=16, out_dim=8)
    check_aggregator(aggregator, raw_set(torch.randn(1, 3, 6, 16), torch.tensor([0, 1, 1, 0, 0, 0]), [3, 6, 9]))


def test_multistage_passes_the_conformance_kit():
    from smg_sdk.testing import check_schedule

    conditions = ConditionSet([
        ConditionStream("mllm", torch.zeros(1, 4, 8), torch.zeros(4, 3), side="text"),
        ConditionStream("ref1", torch.zeros(1, 4, 16), torch.zeros(4, 3), side="reference", independent=True),
    ])
    check_schedule(MultiStageSchedule(), conditions)
