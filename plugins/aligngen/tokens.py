"""Inserting S* before each concept word, and finding S* and the concept through tokenization.

The concept word of a subject is its ``Subject.class_word`` where a ``<k>`` placeholder
stands (or, without placeholders, the class word's first whole-word occurrence); the core's
:func:`smg_sdk.prompts.subject_char_spans` finds those character spans. A *marker*, one
existing special token of the tokenizer (T5's ``<extra_id_0>`` by default), is written
before each concept. Positions come from the tokenizer's offset mapping: S* is the token
whose offsets are exactly the marker's span and whose id is the marker's id; the concept is
every token overlapping the concept's span. Nothing is guessed from strings, and the
tokenizer and its vocabulary are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smg_sdk import ConditionError, Request, subject_char_spans, tokens_in_spans

from .slots import Slot

Span = tuple[int, int]


@dataclass(frozen=True)
class Occurrence:
    """One concept occurrence in a marked prompt: subject, marker span, concept span."""

    subject: int
    marker: Span
    concept: Span


@dataclass(frozen=True)
class MarkedPrompt:
    """A prompt with the marker written before each concept occurrence."""

    text: str
    occurrences: tuple[Occurrence, ...]


def concept_spans(request: Request) -> list[tuple[int, Span]]:
    """(subject, character span in ``request.text_prompt``) of every concept, in text order."""
    spans = sorted((span, k) for k, found in subject_char_spans(request).items() for span in found)
    for (a, k1), (b, k2) in zip(spans, spans[1:]):
        if b[0] < a[1]:
            raise ConditionError(
                f"Subjects {k1 + 1} and {k2 + 1} name the same words {request.text_prompt[b[0]:b[1]]!r} of the prompt; "
                "write the prompt with placeholders (<1>, <2>...) so each subject has its own concept word."
            )
    return [(k, span) for span, k in spans]


def mark_prompt(request: Request, marker: str, separator: str = " ") -> MarkedPrompt:
    """``request.text_prompt`` with ``marker + separator`` before every concept occurrence."""
    text = request.text_prompt
    if marker in text:
        raise ConditionError(
            f"The prompt contains {marker!r}, the token AlignGen reserves for S*; remove it from the prompt."
        )
    pieces: list[str] = []
    occurrences: list[Occurrence] = []
    cursor, length = 0, 0
    for subject, (start, end) in concept_spans(request):
        before = text[cursor:start]
        pieces.append(before)
        length += len(before)
        marker_span = (length, length + len(marker))
        pieces.append(marker + separator)
        length += len(marker) + len(separator)
        pieces.append(text[start:end])
        occurrences.append(Occurrence(subject, marker_span, (length, length + end - start)))
        length += end - start
        cursor = end
    pieces.append(text[cursor:])
    return MarkedPrompt("".join(pieces), tuple(occurrences))


def single_token_id(tokenizer: Any, token: str) -> int:
    """The id of ``token`` if the tokenizer reads it as exactly one token, else a ConditionError."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ConditionError(
            f"The tokenizer reads the S* marker {token!r} as {len(ids)} token(s) {ids}; pick a marker that is one "
            "existing token of its vocabulary (for T5: '<extra_id_0>' ... '<extra_id_99>')."
        )
    return int(ids[0])


def locate_slots(
    marked: MarkedPrompt,
    input_ids: list[int],
    offsets: list[Span],
    marker_id: int,
) -> list[Slot]:
    """The S* and concept token positions of every occurrence, from the offset mapping."""
    slots = []
    for occ in marked.occurrences:
        sstar = [i for i, span in enumerate(offsets) if tuple(span) == occ.marker and input_ids[i] == marker_id]
        concept = tokens_in_spans(offsets, [occ.concept])
        covered = concept and max(offsets[i][1] for i in concept) >= occ.concept[1]
        if len(sstar) != 1 or not covered:
            raise ConditionError(
                f"Subject {occ.subject + 1}'s concept {marked.text[occ.concept[0]:occ.concept[1]]!r} does not fit in "
                f"the {len(input_ids)} text tokens the encoder keeps; shorten the prompt or raise max_sequence_length."
            )
        slots.append(Slot(occ.subject, sstar[0], tuple(concept)))
    return slots


def insert_before(
    input_ids: list[int],
    offsets: list[Span],
    spans: list[Span],
    token_id: int,
) -> tuple[list[int], list[int]]:
    """``input_ids`` with ``token_id`` inserted before the first token of each span; and the new positions.

    Used for tokenizers without a spare special token (CLIP): the marker id is an existing
    id whose embedding is replaced anyway, so the tokenizer is never changed.
    """
    firsts = []
    for span in spans:
        hits = tokens_in_spans(offsets, [span])
        if hits:
            firsts.append(hits[0])
    ids = list(input_ids)
    positions = []
    for shift, index in enumerate(sorted(firsts)):
        ids.insert(index + shift, token_id)
        positions.append(index + shift)
    return ids, positions
