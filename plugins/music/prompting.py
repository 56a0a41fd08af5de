"""Text MUSIC writes around a plan: the planner's instructions to the MLLM, and the prompt
the generator sees once the chain of thought joins it."""

from __future__ import annotations

import re

from smg_sdk import PLACEHOLDER, Request

from .plan_format import format_spec

SYSTEM_PROMPT = (
    "You plan images with several subjects. Look at each reference picture, decide who each subject is, "
    "how they relate and where each one goes on a grid, then write the plan."
)


def subject_names(request: Request) -> list[str]:
    """Each subject's class word, or "subject k" when it has none."""
    return [s.class_word or f"subject {k + 1}" for k, s in enumerate(request.subjects)]


def planner_message(request: Request, rows: int = 8, cols: int = 8) -> str:
    """The user turn after the pictures: the instruction, who is which picture, the format."""
    names = subject_names(request)
    who = "; ".join(f"Picture {k + 1} is subject <{k + 1}> ({name})" for k, name in enumerate(names))
    return f"Instruction: {request.prompt}\nSubjects: {who}.\n{format_spec(len(names), rows, cols)}"


def compose_prompt(request: Request, cot: str) -> str:
    """The instruction followed by the chain of thought, on one line, for the text encoders.

    The instruction is kept as written (its ``<k>`` placeholders still mark the subjects); in
    the chain of thought ``<k>`` becomes "the <class word>", so the added text never changes
    which placeholders the prompt uses.
    """
    names = subject_names(request)

    def word(match: re.Match[str]) -> str:
        k = int(match.group(1))
        return f"the {names[k - 1]}" if 1 <= k <= len(names) else match.group(0)

    thought = " ".join(PLACEHOLDER.sub(word, cot).split())
    head = request.prompt.rstrip()
    if not thought:
        return head
    return f"{head}{'' if head.endswith(('.', '!', '?')) else '.'} {thought}"


__all__ = ["SYSTEM_PROMPT", "compose_prompt", "planner_message", "subject_names"]
