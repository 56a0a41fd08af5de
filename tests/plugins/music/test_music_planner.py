"""The MLLM planner on the tiny Qwen2.5-VL: retries, fallback recorded, registry names, verifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smg_plugins.music.plan_format import format_plan
from smg_plugins.music.planner import MusicPlanner, PlanningError
from smg_plugins.music.verifiers import ClipTextVerifier, JudgeVerifier, SceneJudge
from smg_sdk import Plan, Request, Subject
from smg_sdk.errors import SMGError
from smg_sdk.plans import check_layout_subjects
from smg_sdk.plugins import get_registry

from conftest import make_image

FAST = dict(max_new_tokens=24, max_attempts=2)


def request():
    subjects = [Subject(make_image(i), w) for i, w in enumerate(["dog", "cat", "ball"])]
    return Request("<1> left of <2>, <3> above them", subjects, height=64, width=64)


def test_music_planner_falls_back_and_records_why():
    """Random tiny weights write garbage: every attempt is rejected, the fallback says so."""
    planner = get_registry().build("planner", "music", **FAST)
    plans = planner.plan(request(), 3, torch.Generator().manual_seed(0))
    assert len(plans) == 3
    for plan in plans:
        check_layout_subjects(plan.layout, 3)
        notes = plan.notes
        assert notes["source"] == "heuristic-fallback" and notes["attempts"] == 2
        assert "no valid plan from the MLLM" in notes["fallback_reason"]
        assert len(notes["errors"]) == 2 and notes["errors"][0].startswith("attempt 1:")
        assert len(notes["samples"]) == 2 and notes["model"].endswith("qwen2_5_vl")
        assert plan.prompt.startswith("<1> left of <2>, <3> above them.")
    again = get_registry().build("planner", "music", **FAST).plan(request(), 3, torch.Generator().manual_seed(0))
    assert [p.notes["samples"] for p in again] == [p.notes["samples"] for p in plans]  # seeded sampling
    from smg_sdk.mllm import load_mllm
    from smg_sdk.presets.tiny import tiny_qwen_vl_path

    assert planner.mllm is load_mllm(tiny_qwen_vl_path())  # one loaded model, shared with other components
    strict = MusicPlanner(fallback="error", **FAST)
    with pytest.raises(PlanningError, match="no valid plan"):
        strict.plan(request(), 1, torch.Generator().manual_seed(0))


class ScriptedPlanner(MusicPlanner):
    """The real planner whose model writes the given texts in turn (to check retries deterministically)."""

    def __init__(self, texts, **settings):
        super().__init__(**settings)
        self.texts = list(texts)
        self.rounds = 0

    def sample(self, request, count, seed):
        self.rounds += 1
        return [self.texts.pop(0) for _ in range(count)]


def test_valid_output_is_used_and_invalid_retried():
    layout = torch.tensor([[1, 1, 0, 2], [1, 1, 0, 2], [0, 3, 3, 0], [0, 0, 0, 0]])
    good = format_plan(Plan(cot="<1> is the dog on the left, <3> in the middle.", layout=layout))
    bad = good.replace("3 3", "7 7")  # an id out of range
    planner = ScriptedPlanner([good, bad, good], rows=4, cols=4, max_attempts=3)
    plans = planner.plan(request(), 2, torch.Generator().manual_seed(0))
    assert planner.rounds == 2
    assert plans[0].notes["source"] == "mllm" and plans[0].notes["attempt"] == 1
    assert plans[1].notes["source"] == "mllm" and plans[1].notes["attempt"] == 2
    assert "names subject(s) [7]" in plans[1].notes["errors"][0]
    assert torch.equal(plans[0].layout, layout)
    assert plans[0].prompt.endswith("the dog is the dog on the left, the ball in the middle.")


def test_registry_and_settings():
    registry = get_registry()
    for kind, name in [("planner", "music"), ("planner", "music-heuristic"), ("rule", "music-layout"),
                       ("verifier", "clip-text"), ("verifier", "scene-judge"), ("preset", "music-tiny")]:
        assert registry.owner(kind, name) == "music"
    with pytest.raises(SMGError, match="Unknown music planner setting"):
        registry.build("planner", "music", temprature=1.0)
    with pytest.raises(SMGError):
        MusicPlanner(fallback="guess")


def test_clip_text_verifier_scores_are_cosines():
    verifier = get_registry().build("verifier", "clip-text")
    images = [make_image(i) for i in range(3)]
    scores = verifier.score(images, request())
    assert len(scores) == 3 and all(-1 <= s <= 1 for s in scores)
    manual = (verifier.embed_images(images) @ verifier.embed_texts([request().text_prompt]).T).squeeze(1)
    assert np.allclose(scores, manual.numpy(), atol=1e-5)
    assert scores == ClipTextVerifier().score(images, request())  # deterministic


class CountingJudge:
    """A judge that likes brighter images (stand-in for the SubjectWorld oracle's interface)."""

    def judge(self, images, request, plans):
        return [{"brightness": float(np.asarray(im).mean()) / 255, "valid": 1.0} for im in images]


def test_scene_judge_verifier():
    assert isinstance(CountingJudge(), SceneJudge)
    verifier = JudgeVerifier(CountingJudge(), weights={"valid": 0.0})
    dark, light = make_image(0), make_image(0).point(lambda v: min(255, v + 60))
    scores = verifier.score([dark, light], request())
    assert scores[1] > scores[0] and verifier.last_criteria[0]["valid"] == 1.0
    with pytest.raises(SMGError):
        JudgeVerifier(object())
