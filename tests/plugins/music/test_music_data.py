"""MUSIC's training data: composed samples and subject-count decimation keeping ids consistent."""

from __future__ import annotations

import random
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smg_plugins.music.autodata import synthesize_dataset, synthesize_sample
from smg_plugins.music.data import MusicSample, decimate, drop_mentions, load_samples, save_samples
from smg_sdk import Request, Subject
from smg_sdk.errors import RequestError

from conftest import make_image

WORDS = ["dog", "cat", "ball", "mug", "lamp", "robot", "vase"]
POOL = [Subject(make_image(i, 32), w) for i, w in enumerate(WORDS)]


def ids_in(text: str) -> set[int]:
    return {int(k) for k in re.findall(r"<(\d+)>", text)}


def area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 7), seed=st.integers(0, 10_000))
def test_decimation_keeps_ids_consistent(n, seed):
    rng = random.Random(seed)
    sample = synthesize_sample(rng.sample(POOL, n), rng, size=32)
    chain = decimate(sample)
    assert [s.num_subjects for s in chain] == list(range(n - 1, 1, -1))
    previous = sample
    for current in chain:
        m = current.num_subjects
        kept_words = [s.class_word for s in current.subjects]
        # the smallest subject (by box area) is the one that went
        dropped = min(range(previous.num_subjects), key=lambda k: (area(previous.boxes[k]), -k))
        assert kept_words == [s.class_word for k, s in enumerate(previous.subjects) if k != dropped]
        # instruction names exactly 1..m; CoT and layout stay within 1..m and every subject keeps a cell
        assert ids_in(current.instruction) == set(range(1, m + 1))
        assert ids_in(current.cot) <= set(range(1, m + 1))
        assert set(current.layout.unique().tolist()) <= set(range(0, m + 1))
        for j in range(1, m + 1):
            assert (current.layout == j).any()
        # the CoT still says who is who with the new ids
        for j, word in enumerate(kept_words, start=1):
            if f"<{j}> is the " in current.cot:
                assert f"<{j}> is the {word}" in current.cot
        # a surviving subject keeps every cell it had, under its new id
        old_ids = [k + 1 for k in range(previous.num_subjects) if k != dropped]
        for new_id, old_id in enumerate(old_ids, start=1):
            assert bool(((previous.layout == old_id) <= (current.layout == new_id)).all())
            assert current.boxes[new_id - 1] == previous.boxes[old_id - 1]
        Request(current.instruction, current.subjects)  # still a valid prompt for its subjects
        previous = current


def test_text_edits():
    assert drop_mentions("A photo of <1>, <2> and <3>. <1> is left of <3>.", 3) == "A photo of <1>, <2>."
    assert drop_mentions("A photo of <1>, <2> and <3>.", 1) == "A photo of <2> and <3>."
    assert drop_mentions("<1> left of <2>, <3> above them", 3) == "<1> left of <2>"
    assert drop_mentions("<2> is between <1> and <3>. <1> is red.", 3) == "<1> is red."
    assert drop_mentions("no mention here", 2) == "no mention here"


def test_decimation_of_a_hand_written_sample():
    layout = torch.zeros(8, 8, dtype=torch.int64)
    layout[4:, :4], layout[4:, 4:], layout[0:2, 3:5] = 1, 2, 3
    sample = MusicSample(
        subjects=[Subject(make_image(i, 16), w) for i, w in enumerate(["dog", "cat", "ball"])],
        instruction="<1> left of <2>, <3> above them",
        cot="<1> is the dog, <2> is the cat, <3> is the ball.\n<3> is above <1>.",
        layout=layout, boxes=[(0, 0.5, 0.5, 1), (0.5, 0.5, 1, 1), (0.375, 0, 0.625, 0.25)],
    )
    (two,) = decimate(sample)
    assert two.instruction == "<1> left of <2>"
    assert two.cot == "<1> is the dog, <2> is the cat."
    assert set(two.layout.unique().tolist()) == {0, 1, 2} and two.extras["dropped"] == ["ball"]
    with pytest.raises(RequestError):
        MusicSample(sample.subjects, "<4> alone", "", layout, sample.boxes)


def test_dataset_round_trip(tmp_path):
    data = synthesize_dataset(POOL, count=3, seed=1, max_subjects=4, size=32)
    assert all(2 <= s.num_subjects <= 4 for s in data) and len(data) >= 3
    folder = save_samples(data, tmp_path / "music-data")
    back = load_samples(folder)
    assert len(back) == len(data)
    for a, b in zip(data, back):
        assert (a.instruction, a.cot, a.boxes) == (b.instruction, b.cot, b.boxes)
        assert torch.equal(a.layout, b.layout) and b.target.size == (32, 32)
    training = back[0].to_training_sample()
    assert training.prompt == back[0].instruction and torch.equal(training.extras["layout"], back[0].layout)
