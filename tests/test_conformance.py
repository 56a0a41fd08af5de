"""The conformance kit: core components pass it, and broken components are caught."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

from smg_sdk import Aggregator, AttentionRule, ConditionEncoder, ConditionSet, ConditionStream, DenoisingSchedule, Subject
from smg_sdk.attention.rules import BlockRule, IsolateReferencesRule, StreamBiasRule
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.plugins import get_registry
from smg_sdk.schedules import ConstantSchedule
from smg_sdk.testing import check_aggregator, check_encoder, check_rule, check_schedule, strategies
from smg_sdk.types import Request

from conftest import make_image


def request():
    return Request("a photo of <1> next to <2>", [Subject(make_image(0), "dog"), Subject(make_image(1), "cat")],
                   height=64, width=64, num_inference_steps=2)


@pytest.mark.parametrize("name,config", [("flux-text", {}), ("flux-text", {"t5": False}),
                                         ("vae-reference", {"mode": "cached", "position": "omini"})])
def test_core_encoders_conform(backend, name, config):
    check_encoder(get_registry().build("encoder", name, **config), backend, request())


@settings(max_examples=20, deadline=None)
@given(conditions=strategies.condition_sets())
def test_core_rules_conform(conditions):
    for rule in (BlockRule("kind:text", "kind:reference"), IsolateReferencesRule(), StreamBiasRule("image", 0.5)):
        check_rule(rule, conditions)


@settings(max_examples=10, deadline=None)
@given(conditions=strategies.condition_sets())
def test_constant_schedule_conforms(conditions):
    check_schedule(ConstantSchedule({conditions.streams[0].name: 0.5}), conditions)


@settings(max_examples=15, deadline=None)
@given(req=strategies.requests(), plan=strategies.plans(num_subjects=3))
def test_strategies_make_valid_values(req, plan):
    assert req.height % 16 == 0 and len(req.subjects) <= 3
    assert {1, 2, 3} <= set(plan.layout.unique().tolist())


# ---- the kit must catch broken components -------------------------------------------------


class Mutating(Aggregator):
    def aggregate(self, conditions, request):
        conditions.streams[0].tokens.mul_(2)
        return ConditionSet(list(conditions.streams), conditions.pooled)


class Unblocking(AttentionRule):
    def apply(self, mask, conditions, request):
        mask.allowed |= True


class Negative(DenoisingSchedule):
    def stream_weights(self, step, num_steps, conditions):
        return {conditions.streams[0].name: -1.0}


class Random(ConditionEncoder):
    def encode(self, request, backend):
        return ConditionSet([ConditionStream("noise", torch.randn(1, 2, backend.text_width), torch.zeros(2, 3))])



def test_kit_catches_mutation():
    conditions = ConditionSet([ConditionStream("t", torch.ones(1, 2, 8), torch.zeros(2, 3))])
    with pytest.raises(AssertionError, match="modified its input"):
        check_aggregator(Mutating(), conditions)


def test_kit_catches_unblocking():
    conditions = ConditionSet([ConditionStream("t", torch.ones(1, 2, 8), torch.zeros(2, 3))])
    with pytest.raises(AssertionError, match="unblocked"):
        check_rule(Unblocking(), conditions)


def test_kit_catches_negative_weights():
    conditions = ConditionSet([ConditionStream("t", torch.ones(1, 2, 8), torch.zeros(2, 3))])
    with pytest.raises(AssertionError, match="not finite >= 0"):
        check_schedule(Negative(), conditions)


def test_kit_catches_nondeterminism(backend):
    with pytest.raises(AssertionError, match="not deterministic"):
        check_encoder(Random(), backend, request())
