"""The strict text format MUSIC's planner writes, and the parser that validates it.

A plan is two tagged blocks, in this order, with nothing but whitespace around them::

    <cot>
    <1> is a brown dog, <2> is a grey cat, <3> is a red ball.
    <1> is to the left of <2>; <3> is above both, smaller.
    </cot>
    <layout>
    0 0 0 3 3 0 0 0
    0 0 0 3 3 0 0 0
    0 0 0 0 0 0 0 0
    1 1 1 0 0 2 2 2
    1 1 1 0 0 2 2 2
    1 1 1 0 0 2 2 2
    1 1 1 0 0 2 2 2
    0 0 0 0 0 0 0 0
    </layout>

- ``<cot>``: the visual chain of thought, free text, not empty. Subjects are named ``<k>``
  (``<1>`` is the first reference image); a ``<k>`` beyond the number of subjects is invalid.
  The tags ``<cot>``, ``</cot>``, ``<layout>``, ``</layout>`` may not appear inside.
- ``<layout>``: exactly ``rows`` lines (default 8) of exactly ``cols`` (default 8) whole
  numbers separated by spaces. 0 is an empty cell, ``k`` a cell of subject ``<k>``. Every
  subject ``1..n`` must own at least one cell; no id may exceed ``n``. Blank lines are ignored.

Anything else (a missing or repeated tag, chatter outside the blocks, a short row, a word in
the grid) is rejected with a :class:`PlanFormatError` that says what was wrong, so a planner can
retry or fall back and record why; invalid output is never used silently.
"""

from __future__ import annotations

import re

import torch

from smg_sdk import PLACEHOLDER, Plan, PlanError, as_layout, check_layout_subjects, layout_text

TAGS = ("<cot>", "</cot>", "<layout>", "</layout>")
_ROW = re.compile(r"\d+(?:[ \t]+\d+)*")


class PlanFormatError(PlanError):
    """Planner output that does not follow the plan format (see :mod:`smg_plugins.music.plan_format`)."""


def format_plan(plan: Plan) -> str:
    """``plan`` in the format above (the text a planner is trained to write)."""
    cot = plan.cot.strip()
    if not cot:
        raise PlanFormatError("The plan has no chain of thought; the format needs a non-empty <cot> block.")
    for tag in TAGS:
        if tag in cot:
            raise PlanFormatError(f"The chain of thought contains the tag {tag}, which would end its block early.")
    if plan.layout is None:
        raise PlanFormatError("The plan has no layout; the format needs a <layout> grid.")
    return f"<cot>\n{cot}\n</cot>\n<layout>\n{layout_text(plan.layout)}\n</layout>"


def format_spec(num_subjects: int, rows: int = 8, cols: int = 8) -> str:
    """The format explained to a model, for its system prompt."""
    return (
        "Answer with a plan in exactly this form and nothing else:\n"
        "<cot>\n"
        "your reasoning: who each subject <1>, <2>, ... is, how they relate, where each goes and how big\n"
        "</cot>\n"
        "<layout>\n"
        f"{rows} lines of {cols} numbers separated by spaces: 0 for an empty cell, k for a cell of subject <k>\n"
        "</layout>\n"
        f"There are {num_subjects} subjects; each of 1..{num_subjects} must own at least one cell."
    )


def _block(text: str, name: str) -> tuple[int, int, str]:
    """Start, end and content of the one ``<name>...</name>`` block in ``text``."""
    open_tag, close_tag = f"<{name}>", f"</{name}>"
    for tag in (open_tag, close_tag):
        count = text.count(tag)
        if count != 1:
            what = "is missing" if count == 0 else f"appears {count} times"
            raise PlanFormatError(f"The tag {tag} {what}; a plan has exactly one <{name}>...</{name}> block.")
    start, end = text.index(open_tag), text.index(close_tag)
    if end < start:
        raise PlanFormatError(f"{close_tag} comes before {open_tag}.")
    return start, end + len(close_tag), text[start + len(open_tag) : end]


def parse_plan(text: str, num_subjects: int, rows: int = 8, cols: int = 8) -> Plan:
    """The plan ``text`` describes, checked against the format; :class:`PlanFormatError` otherwise.

    The returned plan has ``cot`` and ``layout`` set; ``prompt`` and ``notes`` are the caller's.
    """
    if not isinstance(text, str):
        raise PlanFormatError(f"Planner output must be text, got {type(text).__name__}.")
    if num_subjects < 1:
        raise PlanFormatError("A plan needs at least one subject to place.")
    cot_start, cot_end, cot = _block(text, "cot")
    lay_start, lay_end, grid = _block(text, "layout")
    if lay_start < cot_end:
        raise PlanFormatError("The <layout> block must come after the <cot> block, not inside or before it.")
    outside = (text[:cot_start] + text[cot_end:lay_start] + text[lay_end:]).strip()
    if outside:
        raise PlanFormatError(f"Text outside the <cot> and <layout> blocks: {outside[:40]!r}; write only the blocks.")
    cot = cot.strip()
    if not cot:
        raise PlanFormatError("The <cot> block is empty; write the reasoning before the layout.")
    named = sorted({int(k) for k in PLACEHOLDER.findall(cot)})
    wrong = [k for k in named if k < 1 or k > num_subjects]
    if wrong:
        raise PlanFormatError(
            f"The chain of thought names {', '.join(f'<{k}>' for k in wrong)} but there are {num_subjects} subjects."
        )
    lines = [line.strip() for line in grid.splitlines() if line.strip()]
    if len(lines) != rows:
        raise PlanFormatError(f"The layout has {len(lines)} rows; it must have exactly {rows}.")
    values = []
    for i, line in enumerate(lines):
        if not _ROW.fullmatch(line):
            raise PlanFormatError(f"Layout row {i + 1} ({line[:30]!r}) is not whole numbers separated by spaces.")
        row = [int(v) for v in line.split()]
        if len(row) != cols:
            raise PlanFormatError(f"Layout row {i + 1} has {len(row)} numbers; every row needs exactly {cols}.")
        values.append(row)
    layout = as_layout(torch.tensor(values, dtype=torch.int64))
    try:
        check_layout_subjects(layout, num_subjects)
    except PlanError as exc:
        raise PlanFormatError(str(exc)) from None
    return Plan(cot=cot, layout=layout)


def prefix_problem(text: str, num_subjects: int, rows: int = 8, cols: int = 8) -> str | None:
    """Why no continuation of ``text`` can be a valid plan, or None while one still can.

    A sampler stops a sequence as soon as this returns a reason (chatter before ``<cot>``, a
    tag inside the chain of thought, a placeholder beyond ``<num_subjects>``, a word, a long row,
    an id above ``num_subjects`` or a row too many in the grid...), since :func:`parse_plan`
    would reject the finished text for the same reason. Text that is complete
    (``</layout>`` written) is left to :func:`parse_plan`.
    """
    text = text.lstrip()
    if not text.startswith("<cot>"):
        return None if "<cot>".startswith(text) else f"starts with {text[:20]!r} instead of <cot>"
    rest = text[len("<cot>"):]
    end = rest.find("</cot>")
    cot, after = (rest, None) if end < 0 else (rest[:end], rest[end + len("</cot>"):].lstrip())
    problem = _cot_problem(cot, num_subjects)
    if problem or after is None:
        return problem
    if not after.startswith("<layout>"):
        return None if "<layout>".startswith(after) else f"{after[:20]!r} after </cot> instead of <layout>"
    grid = after[len("<layout>"):]
    if "</layout>" in grid:
        return None
    partial_tag = grid.rfind("<")
    if partial_tag >= 0 and "</layout>".startswith(grid[partial_tag:]):
        grid = grid[:partial_tag]
    return _grid_problem(grid, num_subjects, rows, cols)


def _cot_problem(cot: str, num_subjects: int) -> str | None:
    for tag in TAGS:
        if tag in cot:
            return f"the tag {tag} inside the chain of thought"
    wrong = [k for k in (int(v) for v in PLACEHOLDER.findall(cot)) if not 1 <= k <= num_subjects]
    return f"the chain of thought names <{wrong[0]}> of {num_subjects} subjects" if wrong else None


def _grid_problem(grid: str, num_subjects: int, rows: int, cols: int) -> str | None:
    """The problem of an unfinished grid (its last line may be partial), or None."""
    *done, last = grid.split("\n")
    complete = [line.strip() for line in done if line.strip()]
    if len(complete) > rows or (len(complete) == rows and last.strip()):
        return f"more than {rows} layout rows"
    for line in complete:
        if not _ROW.fullmatch(line) or len(line.split()) != cols:
            return f"layout row {line[:30]!r} is not {cols} whole numbers"
        if max(int(v) for v in line.split()) > num_subjects:
            return f"a layout id above {num_subjects}"
    if last.strip() and not re.fullmatch(r"[\d \t\r]*", last):
        return f"layout row {last.strip()[:30]!r} is not whole numbers"
    numbers = last.split()
    if len(numbers) > cols:
        return f"a layout row longer than {cols} numbers"
    if any(int(v) > num_subjects for v in numbers):  # writing more digits never makes a number smaller
        return f"a layout id above {num_subjects}"
    return None


__all__ = ["PlanFormatError", "TAGS", "format_plan", "format_spec", "parse_plan", "prefix_problem"]
