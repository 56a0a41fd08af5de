"""AlignGen's components pass the conformance kit."""

from __future__ import annotations

from smg_sdk import Subject, SubjectPipeline
from smg_sdk.conditions import ConditionSet
from smg_sdk.testing import check_aggregator, check_encoder, check_rule

from conftest import make_image


def test_aligngen_components_conform():
    pipe = SubjectPipeline.from_preset("aligngen-tiny")
    request = pipe.make_request("a photo of <1> next to <2>", [Subject(make_image(0), "robot"),
                                                               Subject(make_image(1), "guitar")])
    parts = [check_encoder(encoder, pipe.backend, request) for encoder in pipe.encoders]
    conditions = ConditionSet.merge(parts)
    for aggregator in pipe.aggregators:
        conditions = check_aggregator(aggregator, conditions, request)
    for rule in pipe.rules:
        check_rule(rule, conditions, request, image_tokens=16)
