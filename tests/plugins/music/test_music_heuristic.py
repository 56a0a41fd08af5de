"""The heuristic planner: spatial words -> layouts that respect them, for any subject count and size."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from smg_plugins.music.heuristic import HeuristicPlanner, estimate_sizes
from smg_plugins.music.spatial import ABOVE, FRONT, LEFT, Relation, parse_spatial
from smg_sdk import Request, Subject
from smg_sdk.plans import check_layout_subjects

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = ["dog", "cat", "ball", "mug", "lamp", "robot"]


def subject_image(half_side: int, colour=(200, 40, 40)) -> Image.Image:
    """A square of the given half side on a plain background (its size is what the planner reads)."""
    image = Image.new("RGB", (64, 64), (236, 232, 222))
    ImageDraw.Draw(image).rectangle((32 - half_side, 32 - half_side, 32 + half_side, 32 + half_side), fill=colour)
    return image


def columns(layout: torch.Tensor, k: int) -> set[int]:
    return set((layout == k).nonzero()[:, 1].tolist())


def rows_of(layout: torch.Tensor, k: int) -> set[int]:
    return set((layout == k).nonzero()[:, 0].tolist())


LEFT_PHRASES = ["<{a}> left of <{b}>", "<{a}> is to the left of <{b}>", "<{b}> to the right of <{a}>",
                "<{b}> is on the right of <{a}>"]


@SETTINGS
@given(
    n=st.integers(2, 6),
    data=st.data(),
    grid=st.sampled_from([(8, 8), (6, 10), (12, 12)]),
)
def test_a_left_of_b_for_any_count_and_sizes(n, data, grid):
    a, b = data.draw(st.permutations(range(1, n + 1)), label="order")[:2]
    sizes = data.draw(st.lists(st.integers(4, 30), min_size=n, max_size=n), label="sizes")
    phrase = data.draw(st.sampled_from(LEFT_PHRASES), label="phrase").format(a=a, b=b)
    others = [k for k in range(1, n + 1) if k not in (a, b)]
    prompt = phrase + ("" if not others else ", with " + " and ".join(f"<{k}>" for k in others))
    subjects = [Subject(subject_image(s), WORDS[i]) for i, s in enumerate(sizes)]
    request = Request(prompt, subjects, height=64, width=64)
    rows, cols = grid
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 99), label="seed"))
    plans = HeuristicPlanner(rows=rows, cols=cols).plan(request, 3, generator)
    for plan in plans:  # the canonical plan and two jittered variants
        check_layout_subjects(plan.layout, n)
        assert max(columns(plan.layout, a)) < min(columns(plan.layout, b)), (prompt, plan.layout)
        assert plan.layout.shape == (rows, cols)


@SETTINGS
@given(n=st.integers(2, 5), data=st.data())
def test_above_puts_rows_higher(n, data):
    a, b = data.draw(st.permutations(range(1, n + 1)))[:2]
    word = data.draw(st.sampled_from(["<{a}> above <{b}>", "<{b}> below <{a}>", "<{a}> on top of <{b}>",
                                      "<{b}> under <{a}>"])).format(a=a, b=b)
    others = [k for k in range(1, n + 1) if k not in (a, b)]
    prompt = word + "".join(f", <{k}>" for k in others)
    request = Request(prompt, [Subject(subject_image(20), WORDS[i]) for i in range(n)], height=64, width=64)
    plan = HeuristicPlanner().plan(request, 1)[0]
    assert max(rows_of(plan.layout, a)) < min(rows_of(plan.layout, b)), (prompt, plan.layout)


def test_issue_example_and_determinism():
    subjects = [Subject(subject_image(28), "dog"), Subject(subject_image(22), "cat"), Subject(subject_image(8), "ball")]
    request = Request("<1> left of <2>, <3> above them", subjects, height=64, width=64)
    planner = HeuristicPlanner()
    first = planner.plan(request, 2, torch.Generator().manual_seed(5))
    again = planner.plan(request, 2, torch.Generator().manual_seed(5))
    assert all(torch.equal(x.layout, y.layout) for x, y in zip(first, again))
    layout = first[0].layout
    assert max(columns(layout, 1)) < min(columns(layout, 2))
    assert max(rows_of(layout, 3)) < min(rows_of(layout, 1) | rows_of(layout, 2))
    assert (layout == 3).sum() < (layout == 1).sum()  # the ball is drawn smaller than the dog
    assert first[0].notes["source"] == "heuristic" and "<1> is left of <2>" in first[0].notes["relations"]
    assert first[0].prompt.startswith("<1> left of <2>, <3> above them.") and "<" not in first[0].prompt[31:]
    assert "<3> goes in the top" in first[0].cot


def test_spatial_phrases():
    words = ["dog", "cat", "ball"]
    between = parse_spatial("<2> between <1> and <3>", words)
    assert set(between.relations) == {Relation(LEFT, 0, 1), Relation(LEFT, 1, 2)}
    assert parse_spatial("<1> behind <2>", words).relations == [Relation(FRONT, 1, 0)]
    corners = parse_spatial("a dog in the top left corner and a cat at the bottom right", words)
    anchors = [(a.subject, a.horizontal, a.vertical) for a in corners.anchors]
    assert anchors == [(0, "left", "top"), (1, "right", "bottom")]
    them = parse_spatial("<1> left of <2>, <3> above them", words)
    assert Relation(ABOVE, 2, 0) in them.relations and Relation(ABOVE, 2, 1) in them.relations
    assert parse_spatial("a small <3> next to <1>, <2>", words).size_hints == {2: 0.65}


def test_corners_front_and_conflicts():
    subjects = [Subject(subject_image(20), w) for w in ("dog", "cat", "ball")]
    planner = HeuristicPlanner()
    corners = planner.plan(Request("<1> in the top left corner, <2> in the bottom right corner, <3>", subjects,
                                   height=64, width=64), 1)[0].layout
    assert max(columns(corners, 1)) < min(columns(corners, 2)) and max(rows_of(corners, 1)) < min(rows_of(corners, 2))
    front = planner.plan(Request("<1> in front of <2>, <3>", subjects, height=64, width=64), 1)[0].layout
    assert min(rows_of(front, 1)) > min(rows_of(front, 2))
    clash = planner.plan(Request("<1> left of <2>, <2> left of <1>, <3>", subjects, height=64, width=64), 1)[0]
    assert any("contradicts" in c for c in clash.notes["conflicts"])
    check_layout_subjects(clash.layout, 3)


def test_sizes_from_references():
    sizes = estimate_sizes([subject_image(30), subject_image(15), subject_image(3)])
    assert sizes[0] == 1.0 and sizes[0] > sizes[1] > sizes[2] >= 0.45
    assert estimate_sizes([Image.new("RGB", (32, 32), "white")] * 2) == [1.0, 1.0]


def test_no_placeholders_uses_class_words():
    subjects = [Subject(subject_image(20), "dog"), Subject(subject_image(20), "cat")]
    plan = HeuristicPlanner().plan(Request("the cat to the left of the dog", subjects, height=64, width=64), 1)[0]
    assert max(columns(plan.layout, 2)) < min(columns(plan.layout, 1))
    Request(plan.prompt, subjects)  # the prompt with the CoT is still a valid request
