"""Test-time scaling in the pipeline: shared encodings, batched candidates, per-candidate plans, ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smg_plugins.music.heuristic import HeuristicPlanner
from smg_plugins.music.layout_rule import LayoutAttentionRule
from smg_plugins.music.verifiers import ClipTextVerifier
from smg_sdk import Subject
from smg_sdk.candidates import can_stack, stack
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.errors import RequestError
from smg_sdk.pipeline import SubjectPipeline

from conftest import make_image

PROMPT = "<1> left of <2>, <3> above them"
N = 4


class CountingText(FluxTextEncoder):
    """The real FLUX text encoder, counting its calls."""

    calls = 0

    def encode(self, request, backend):
        self.calls += 1
        return super().encode(request, backend)


class CountingVAE(VAEReferenceEncoder):
    """The real VAE reference encoder, counting its calls."""

    calls = 0

    def encode(self, request, backend):
        self.calls += 1
        return super().encode(request, backend)


def subjects():
    return [Subject(make_image(i), w) for i, w in enumerate(["dog", "cat", "ball"])]


def make_pipe(backend, cot_in_prompt=True, rules=True, verifier=None):
    pipe = SubjectPipeline(backend, [CountingText(), CountingVAE()],
                           rules=[LayoutAttentionRule()] if rules else [],
                           planner=HeuristicPlanner(cot_in_prompt=cot_in_prompt), verifier=verifier)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def calls(pipe):
    return sum(e.calls for e in pipe.encoders)


def run(pipe, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(PROMPT, subjects(), height=64, width=64, generator=torch.Generator().manual_seed(0), **kwargs)


@pytest.mark.parametrize("cot_in_prompt", [True, False])
def test_candidates_cost_fewer_encoder_calls_than_separate_requests(backend, cot_in_prompt):
    together = make_pipe(backend, cot_in_prompt)
    out = run(together, num_candidates=N, output_type="np")
    prompts = {plan.prompt for plan in out.plans}
    separate = make_pipe(backend, cot_in_prompt)
    for _ in range(N):
        run(separate, num_candidates=1, output_type="np")
    text, vae = together.encoders
    assert vae.calls == 1  # references do not depend on the plan: encoded once for all candidates
    assert text.calls == (len(prompts) if cot_in_prompt else 1)  # once per distinct prompt
    assert calls(together) < calls(separate) == 2 * N
    assert together.last_candidate_batches == [[0, 1, 2, 3]]  # one sampler call for all candidates


def test_batched_candidates_equal_sequential_and_follow_their_plans(backend):
    batched = run(make_pipe(backend), num_candidates=N, output_type="np")
    sequential_pipe = make_pipe(backend)
    sequential = run(sequential_pipe, num_candidates=N, output_type="np", candidate_batch_size=1)
    assert sequential_pipe.last_candidate_batches == [[0], [1], [2], [3]]
    assert batched.images.shape == (N, 64, 64, 3)
    assert np.abs(batched.images - sequential.images).max() < 1e-4  # per-row masks == per-candidate masks
    layouts = [p.layout for p in batched.plans]
    assert not all(torch.equal(layouts[0], other) for other in layouts[1:])
    without_rule = run(make_pipe(backend, rules=False), num_candidates=N, output_type="np")
    assert np.abs(batched.images - without_rule.images).max() > 1e-3  # the layouts really steer attention


def test_negative_prompt_shares_reference_encodings(backend):
    pipe = make_pipe(backend)
    out = run(pipe, num_candidates=2, negative_prompt="blurry", true_cfg_scale=2.0, output_type="np")
    text, vae = pipe.encoders
    assert text.calls == len({p.prompt for p in out.plans}) + 1  # each plan prompt + the negative
    assert vae.calls == 1  # references once, shared with the negative
    assert out.images.shape[0] == 2 and np.isfinite(out.images).all()


def test_verifier_ranks_candidates(backend):
    pipe = make_pipe(backend, verifier=ClipTextVerifier())
    out = run(pipe, num_candidates=3, num_images_per_prompt=2)
    assert len(out.candidates) == 6 and sorted(out.ranking) == list(range(6))
    assert out.scores == sorted(out.scores, reverse=True)
    for image, k in zip(out.images, out.ranking):
        assert np.array_equal(np.asarray(image), np.asarray(out.candidates[k]))
    assert len(out.plans) == 6 and out.plans[0] is not None
    with pytest.raises(RequestError):
        run(pipe, num_candidates=2, candidate_batch_size=0)


def test_stacking_keeps_per_row_metadata(backend):
    pipe = make_pipe(backend)
    request = pipe.make_request(PROMPT, subjects(), height=64, width=64)
    plans = HeuristicPlanner().plan(request, 2, torch.Generator().manual_seed(1))
    plans[1].prompt += " On a beach."
    sets, _ = pipe.encode_candidates(request, plans)
    assert can_stack(sets[0], sets[1])
    both = stack(sets)
    assert both.meta["plans"] == plans and "plan" not in both.meta
    prompt = both.get("prompt")
    texts = [row["text"] for row in prompt.meta["rows"]]
    assert prompt.tokens.shape[0] == 2 and texts[1].endswith("On a beach.") and not texts[0].endswith("beach.")
    assert both.get("ref1").tokens.shape[0] == 2 and "rows" not in both.get("ref1").meta


def test_music_tiny_ranks_with_the_named_verifier_and_the_eval_draws_its_candidates():
    from smg_plugins.music.verifiers import JudgeVerifier
    from smg_sdk.data.subjectworld import SubjectWorld
    from smg_sdk.errors import ConfigError
    from smg_sdk.eval.judge import SubjectWorldJudge
    from smg_sdk.eval.world_eval import WorldEvalConfig, _generator

    pipe = SubjectPipeline.from_preset("music-tiny", planner="music-heuristic", verifier="scene-judge",
                                       verifier_options={"judge": "subjectworld"})
    assert isinstance(pipe.verifier, JudgeVerifier) and isinstance(pipe.verifier.judge, SubjectWorldJudge)
    sample = SubjectWorld("heldout", seed=3, subjects=(2,))[0]
    image = _generator(WorldEvalConfig("music-tiny", (2,), 1, steps=1, candidates=3), pipe)(sample, 0)
    assert pipe.last_candidate_batches == [[0, 1, 2]]
    by_hand = pipe(sample.prompt, sample.subjects(), height=128, width=128, num_inference_steps=1, seed=0,
                   num_candidates=3)
    assert np.array_equal(np.asarray(image), np.asarray(by_hand.images[0]))  # the verifier's best
    assert by_hand.scores == sorted(by_hand.scores, reverse=True) and len(pipe.verifier.last_criteria) == 3
    with pytest.raises(ConfigError, match="verifier_options"):
        SubjectPipeline.from_preset("music-tiny", verifier_options="judge=subjectworld")
