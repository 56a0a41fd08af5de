"""MUSIC components against the SDK's conformance kit, and a composed pipeline saved and reloaded."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings

from smg_plugins.music.heuristic import HeuristicPlanner
from smg_plugins.music.layout_rule import LayoutAttentionRule
from smg_plugins.music.planner import MusicPlanner
from smg_sdk import ConditionSet, ConditionStream, Request, Subject
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.plugins import get_registry
from smg_sdk.backends.flux.positions import grid_ids, text_ids
from smg_sdk.testing import check_planner, check_rule, check_verifier
from smg_sdk.testing.strategies import plans

from conftest import make_image


def request():
    return Request("<1> next to <2>", [Subject(make_image(0), "dog"), Subject(make_image(1), "cat")], height=64,
                   width=64)


def test_planners_conform():
    check_planner(get_registry().build("planner", "music-heuristic"), request())
    check_planner(get_registry().build("planner", "music", max_new_tokens=16, max_attempts=1), request(), num_plans=2)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(num_subjects=2))
def test_layout_rule_conforms(plan):
    streams = [ConditionStream("prompt", torch.zeros(1, 3, 8), text_ids(3))]
    streams += [ConditionStream(f"ref{k + 1}", torch.zeros(1, 4, 16), grid_ids(2, 2, axis0=k + 1), side="reference",
                                subject=k, independent=True) for k in range(2)]
    for mode in ("hard", "soft"):
        check_rule(LayoutAttentionRule(mode=mode), ConditionSet(streams, torch.zeros(1, 4), {"plan": plan}))


def test_clip_verifier_conforms():
    check_verifier(get_registry().build("verifier", "clip-text"), [make_image(i) for i in range(2)], request())


def test_music_pipeline_saves_and_loads(tmp_path):
    pipe = SubjectPipeline.from_preset("music-tiny", planner="music-heuristic", layout_mode="soft")
    folder = pipe.save_pretrained(tmp_path / "music-pipe")
    back = SubjectPipeline.from_pretrained(folder)
    assert isinstance(back.planner, HeuristicPlanner)
    rule = next(r for r in back.rules if isinstance(r, LayoutAttentionRule))
    assert rule.mode == "soft"
    assert type(back.verifier).__name__ == "ClipTextVerifier"
    back.set_progress_bar_config(disable=True)
    out = back("<1> next to <2>", request().subjects, num_inference_steps=2, seed=0, num_candidates=2)
    assert len(out.images) == 2 and len(out.scores) == 2 and out.plans[0].notes["source"] == "heuristic"
    assert isinstance(SubjectPipeline.from_preset("music-tiny").planner, MusicPlanner)


def test_music_tiny_keeps_the_chain_of_thought_out_of_the_prompt():
    """The tiny T5 only saw short captions: music-tiny's plans leave the prompt as it is, unless asked."""
    heuristic = SubjectPipeline.from_preset("music-tiny", planner="music-heuristic")
    assert heuristic.planner.cot_in_prompt is False
    assert [p.prompt for p in heuristic.planner.plan(request(), 2)] == [None, None]
    assert SubjectPipeline.from_preset("music-tiny").planner.config.cot_in_prompt is False
    asked = SubjectPipeline.from_preset("music-tiny", planner="music-heuristic", cot_in_prompt=True)
    assert asked.planner.plan(request(), 1)[0].prompt is not None
