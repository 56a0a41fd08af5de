"""What the MUSIC planner spends: one batched generate call per round, samples stopped at their first
format mistake or at </layout>, and a token budget derived from the plan format."""

from __future__ import annotations

import torch

from smg_plugins.music.plan_format import format_plan, prefix_problem
from smg_plugins.music.planner import MusicPlanner
from smg_plugins.music.stopping import FormatWatch
from smg_sdk import Plan, Request, Subject

from conftest import make_image


def request() -> Request:
    subjects = [Subject(make_image(i), w) for i, w in enumerate(["dog", "cat", "ball"])]
    return Request("<1> left of <2>, <3> above them", subjects, height=64, width=64)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_format_watch_stops_garbage_at_its_first_mistake_and_never_a_valid_plan():
    tokenizer = MusicPlanner().mllm.tokenizer
    layout = torch.tensor([[1, 1, 0, 2], [1, 1, 0, 2], [0, 3, 3, 0], [0, 0, 0, 0]])
    good = _ids(tokenizer, format_plan(Plan(cot="<1> is the dog, <3> sits above.", layout=layout)))
    bad = _ids(tokenizer, "<cot>\n<1> is a dog\n</cot>\n<layout>\n1 1 0 2\n1 1 oops")
    bad = (bad + good)[: len(good)]
    prompt = _ids(tokenizer, "plan this")
    watch = FormatWatch(tokenizer, len(prompt), num_subjects=3, rows=4, cols=4)
    stopped_at = None
    for step in range(1, len(good) + 1):
        rows = torch.tensor([prompt + good[:step], prompt + bad[:step]])
        done = watch(rows, torch.zeros(2, 1))
        assert not done[0] and watch.reasons[0] is None
        if done[1] and stopped_at is None:
            stopped_at = step
    assert "not whole numbers" in watch.reasons[1]
    assert prefix_problem(tokenizer.decode(bad[: stopped_at - 1]), 3, 4, 4) is None  # stopped at the first mistake
    assert prefix_problem(tokenizer.decode(bad[:stopped_at]), 3, 4, 4) is not None


def test_token_budget_fits_the_longest_layout_block():
    planner = MusicPlanner(max_cot_tokens=40)
    tokenizer = planner.mllm.tokenizer
    budget = planner.token_budget(3)
    cot = " ".join(["word"] * 40)
    while len(_ids(tokenizer, cot)) > 40:
        cot = cot.rsplit(" ", 1)[0]
    for k in range(4):  # every layout id filling the grid (0 alone is not a valid plan, but tokenizes the same)
        text = f"<cot>\n{cot}\n</cot>\n<layout>\n" + "\n".join([" ".join([str(k)] * 8)] * 8) + "\n</layout>"
        assert len(_ids(tokenizer, text)) <= budget
    assert budget < 320  # the old fixed budget (320 tokens) was larger than any plan of this format needs
    assert MusicPlanner(max_new_tokens=24).token_budget(3) == 24


def test_rounds_are_one_batched_call_and_samples_stop_early(monkeypatch):
    planner = MusicPlanner(max_attempts=2)
    calls = []
    generate = planner.mllm.model.generate

    def counting(**kwargs):
        out = generate(**kwargs)
        calls.append((kwargs["num_return_sequences"], kwargs["use_cache"], out.shape[-1] - kwargs["input_ids"].shape[-1]))
        return out

    monkeypatch.setattr(planner.mllm.model, "generate", counting)
    plans = planner.plan(request(), 3, torch.Generator().manual_seed(0))
    assert [c[:2] for c in calls] == [(3, True), (3, True)]  # 3 candidates per call, KV cache on, 2 rounds
    budget = planner.token_budget(3)
    assert all(new_tokens < budget for *_, new_tokens in calls)  # the random model's garbage was cut short
    for plan in plans:
        assert plan.notes["source"] == "heuristic-fallback"
        assert all("sampling stopped early" in error for error in plan.notes["errors"])
