"""Where each subject is named in a prompt: character spans and the tokens that overlap them.

Backend-neutral helpers for encoders that record which prompt tokens name which subject
(``ConditionSet.meta["subject_tokens"]``) and for rules and aggregators that read it.
"""

from __future__ import annotations

import re

from .types import PLACEHOLDER, Request


def subject_char_spans(request: Request) -> dict[int, list[tuple[int, int]]]:
    """Character spans, in ``request.text_prompt``, of each subject's class word.

    Placeholders are the reliable anchor: ``<k>`` is replaced by the class word, and the
    span of that replacement is recorded. Without placeholders, each subject's class word
    is found as a whole word in the prompt (first occurrence).
    """
    spans: dict[int, list[tuple[int, int]]] = {}
    if PLACEHOLDER.search(request.prompt):
        out, pos = [], 0
        for match in PLACEHOLDER.finditer(request.prompt):
            out.append(request.prompt[pos : match.start()])
            k = int(match.group(1)) - 1
            word = request.subjects[k].class_word or f"subject {k + 1}"
            start = sum(len(p) for p in out)
            spans.setdefault(k, []).append((start, start + len(word)))
            out.append(word)
            pos = match.end()
        return spans
    for k, subject in enumerate(request.subjects):
        if subject.class_word:
            m = re.search(rf"\b{re.escape(subject.class_word)}\b", request.prompt)
            if m:
                spans[k] = [(m.start(), m.end())]
    return spans


def tokens_in_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Indices of tokens whose character offsets overlap any span (special tokens have (0, 0))."""
    hits = []
    for i, (a, b) in enumerate(offsets):
        if b <= a:
            continue
        if any(a < e and b > s for s, e in spans):
            hits.append(i)
    return hits
