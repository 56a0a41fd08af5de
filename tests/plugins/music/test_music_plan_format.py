"""MUSIC's plan text format: round trips for valid plans, rejection of corrupt ones; core Plan rendering."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smg_plugins.music.plan_format import TAGS, PlanFormatError, format_plan, parse_plan, prefix_problem
from smg_sdk import Plan
from smg_sdk.conditions import ConditionSet
from smg_sdk.errors import PlanError
from smg_sdk.plans import as_layout, layout_image, plans_for_rows

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_plans(draw):
    """(plan, number of subjects, rows, cols) with every subject owning at least one cell."""
    rows, cols = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    n = draw(st.integers(1, min(9, rows * cols)))
    cells = draw(st.lists(st.integers(0, n), min_size=rows * cols, max_size=rows * cols))
    positions = draw(st.permutations(range(rows * cols)))
    for k in range(1, n + 1):  # guarantee presence at distinct cells
        cells[positions[k - 1]] = k
    words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=60)
    cot = draw(words.map(str.strip).filter(lambda t: t and not any(tag in t for tag in TAGS)))
    mentions = draw(st.lists(st.integers(1, n), max_size=3))
    cot = " ".join([cot] + [f"<{k}>" for k in mentions])
    return Plan(cot=cot, layout=torch.tensor(cells).view(rows, cols)), n, rows, cols


@SETTINGS
@given(valid_plans())
def test_round_trip(case):
    plan, n, rows, cols = case
    parsed = parse_plan(format_plan(plan), n, rows, cols)
    assert parsed.cot == plan.cot
    assert torch.equal(parsed.layout, plan.layout)
    assert parse_plan("\n  " + format_plan(plan) + "\n\n", n, rows, cols).cot == plan.cot  # whitespace around is fine


def _corrupt(text: str, plan: Plan, n: int, kind: str, data) -> str:
    lines = text.split("\n")
    grid_start = lines.index("<layout>") + 1
    rows = plan.layout.shape[0]
    row = grid_start + data.draw(st.integers(0, rows - 1), label="row")
    if kind == "drop_tag":
        tag = data.draw(st.sampled_from(TAGS), label="tag")
        return text.replace(tag, "", 1)
    if kind == "repeat_tag":
        tag = data.draw(st.sampled_from(TAGS), label="tag")
        return text + "\n" + tag
    if kind == "drop_row":
        del lines[row]
    elif kind == "extra_row":
        lines.insert(row, lines[row])
    elif kind == "short_row":
        lines[row] = " ".join(lines[row].split()[:-1]) or "x"
    elif kind == "long_row":
        lines[row] += " 0"
    elif kind == "word_in_grid":
        cells = lines[row].split()
        cells[data.draw(st.integers(0, len(cells) - 1), label="cell")] = data.draw(
            st.sampled_from(["a", "-1", "1.5", "one", "#"]), label="junk")
        lines[row] = " ".join(cells)
    elif kind == "id_out_of_range":
        cells = lines[row].split()
        cells[data.draw(st.integers(0, len(cells) - 1), label="cell")] = str(n + data.draw(st.integers(1, 50)))
        lines[row] = " ".join(cells)
    elif kind == "subject_missing":
        k = data.draw(st.integers(1, n), label="subject")
        for i in range(grid_start, grid_start + rows):
            lines[i] = " ".join("0" if v == str(k) else v for v in lines[i].split())
    elif kind == "chatter":
        return data.draw(st.sampled_from(["Sure! ", "plan:\n"]), label="chatter") + text
    elif kind == "cot_names_unknown_subject":
        return text.replace("<cot>\n", f"<cot>\n<{n + 1}> ", 1)
    elif kind == "empty_cot":
        start, end = text.index("<cot>") + 5, text.index("</cot>")
        return text[:start] + "\n \n" + text[end:]
    elif kind == "swapped_blocks":
        cot_block = text[: text.index("</cot>") + 6]
        return text[text.index("<layout>"):] + "\n" + cot_block
    return "\n".join(lines)


KINDS = ["drop_tag", "repeat_tag", "drop_row", "extra_row", "short_row", "long_row", "word_in_grid",
         "id_out_of_range", "subject_missing", "chatter", "cot_names_unknown_subject", "empty_cot", "swapped_blocks"]


@SETTINGS
@given(valid_plans(), st.sampled_from(KINDS), st.data())
def test_corrupt_plans_are_rejected(case, kind, data):
    plan, n, rows, cols = case
    text = _corrupt(format_plan(plan), plan, n, kind, data)
    with pytest.raises(PlanFormatError):
        parse_plan(text, n, rows, cols)


def test_error_messages_say_what_is_wrong():
    plan = Plan(cot="<1> left of <2>", layout=[[1, 0], [0, 2]])
    with pytest.raises(PlanFormatError, match="Subject"):
        parse_plan(format_plan(plan), 3, 2, 2)
    with pytest.raises(PlanFormatError, match="exactly 3"):
        parse_plan(format_plan(plan), 2, 3, 2)
    with pytest.raises(PlanFormatError, match="missing"):
        parse_plan("no plan here", 2, 2, 2)


def test_core_plan_validation_and_rendering():
    plan = Plan(cot="think", layout=[[0, 1], [2, 2]])
    assert plan.layout.dtype == torch.int64 and plan.grid_shape == (2, 2)
    assert plan.layout_text() == "0 1\n2 2"
    assert plan.to_text().startswith("think\nLayout (2x2")
    image = plan.grid_image(cell=10, names=["dog", "cat"], title="t")
    assert image.size[0] >= 20 and image.size[1] > 20
    assert layout_image(torch.tensor([[3]])).size[1] > 0
    for bad in ([[1, -1]], [1, 2], [[0.5, 1]], "abc", [[True]]):
        with pytest.raises(PlanError):
            as_layout(bad)
    with pytest.raises(PlanError):
        Plan(cot=3)  # type: ignore[arg-type]
    with pytest.raises(PlanError):
        Plan().grid_image()


def test_plans_for_rows():
    a, b = Plan(cot="a"), Plan(cot="b")
    assert plans_for_rows(ConditionSet(meta={"plan": a}), 2) == [a, a]
    assert plans_for_rows(ConditionSet(meta={"plans": [a, b]}), 2) == [a, b]
    assert plans_for_rows(ConditionSet(), 3) == [None, None, None]
    with pytest.raises(PlanError):
        plans_for_rows(ConditionSet(meta={"plans": [a]}), 2)


@SETTINGS
@given(valid_plans())
def test_no_prefix_of_a_valid_plan_is_flagged(case):
    """A sampler stopping at prefix_problem never cuts a plan the parser would accept."""
    plan, n, rows, cols = case
    text = "\n " + format_plan(plan)
    assert all(prefix_problem(text[:end], n, rows, cols) is None for end in range(len(text) + 1))


@pytest.mark.parametrize("text, reason", [
    ("Sure! <cot>", "instead of <cot>"),
    ("<cot> <1> and <4>", "names <4> of 3 subjects"),
    ("<cot>a <layout>", "the tag <layout> inside the chain of thought"),
    ("<cot>a</cot>\nthe layout:", "after </cot> instead of <layout>"),
    ("<cot>a</cot>\n<layout>\n1 2 0 x", "is not whole numbers"),
    ("<cot>a</cot>\n<layout>\n1 2 0 3 1", "longer than 4 numbers"),
    ("<cot>a</cot>\n<layout>\n1 2 5", "a layout id above 3"),
    ("<cot>a</cot>\n<layout>\n1 2 0\n", "is not 4 whole numbers"),
    ("<cot>a</cot>\n<layout>\n" + "1 2 3 0\n" * 4 + "0", "more than 4 layout rows"),
])
def test_prefix_problem_names_the_first_mistake(text, reason):
    assert reason in prefix_problem(text, 3, 4, 4)
    with pytest.raises(PlanFormatError):  # and the parser rejects the text whatever follows
        parse_plan(text + "\n</cot>\n<layout>\n" + "1 2 3 0\n" * 4 + "</layout>", 3, 4, 4)


def test_prefix_problem_allows_what_the_parser_allows():
    spaced = "<cot>a</cot>\n\n<layout>\n 1 2 0 3 \r\n\n1 2 0 3\t"  # blank lines, spaces, CRLF: all parse
    assert prefix_problem(spaced, 3, 4, 4) is None
    assert parse_plan(spaced + "\n" + "1 2 3 0\n" * 2 + "</layout>", 3, 4, 4).layout.shape == (4, 4)
