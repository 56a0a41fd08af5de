"""Where S* and the concept tokens sit in a text stream: the metadata rules and aggregators read.

An encoder that inserts S* records, per text stream, one *slot* per concept occurrence::

    conditions.meta["sstar_slots"][stream] = [{"subject": k, "sstar": p, "concept": [q, ...]}, ...]

positions are indices into that stream's tokens. It also fills the core convention
``meta["subject_tokens"][stream][k]`` (S* and concept tokens both name subject k), so core
rules and other plugins see the same tokens. Plain dicts and lists keep the metadata
readable by any plugin without importing this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from smg_sdk import ConditionError, ConditionSet

SLOTS_KEY = "sstar_slots"


@dataclass(frozen=True)
class Slot:
    """One concept occurrence: its subject, the S* position and the concept word's positions."""

    subject: int
    sstar: int
    concept: tuple[int, ...]

    @property
    def positions(self) -> list[int]:
        """S* first, then the concept tokens: the sequence the DEM reads."""
        return [self.sstar, *self.concept]

    def as_meta(self) -> dict[str, Any]:
        return {"subject": self.subject, "sstar": self.sstar, "concept": list(self.concept)}


def slots_meta(stream: str, slots: list[Slot]) -> dict[str, Any]:
    """The ConditionSet meta an encoder returns for ``slots`` of ``stream``."""
    subject_tokens: dict[int, list[int]] = {}
    for slot in slots:
        subject_tokens.setdefault(slot.subject, []).extend(slot.positions)
    return {
        SLOTS_KEY: {stream: [s.as_meta() for s in slots]},
        "subject_tokens": {stream: {k: sorted(v) for k, v in subject_tokens.items()}},
    }


def read_slots(conditions: ConditionSet, stream: str) -> list[Slot]:
    """The slots recorded for ``stream`` (empty when the stream has none)."""
    entries = (conditions.meta.get(SLOTS_KEY) or {}).get(stream, [])
    try:
        return [Slot(int(e["subject"]), int(e["sstar"]), tuple(int(i) for i in e["concept"])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConditionError(
            f"meta[{SLOTS_KEY!r}][{stream!r}] is malformed ({exc}); each entry must be "
            "{'subject': int, 'sstar': int, 'concept': [int, ...]}."
        ) from exc


def concept_slots(conditions: ConditionSet, stream: str) -> list[Slot]:
    """Slots without S* from the core's ``meta["subject_tokens"][stream]`` (subject -> its class-word
    positions, as ``flux-text`` records them): one per subject, its first token standing in the S*
    place. Empty when the stream has none. Raises :class:`ConditionError` if the entry is malformed."""
    entries = (conditions.meta.get("subject_tokens") or {}).get(stream) or {}
    try:
        positions = {int(k): sorted(int(i) for i in v) for k, v in entries.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ConditionError(f"meta['subject_tokens'][{stream!r}] is malformed ({exc}); it must map each "
                             "subject index to its token positions.") from exc
    return [Slot(k, v[0], tuple(v[1:])) for k, v in sorted(positions.items()) if v]


def slot_token_mask(slots: list[Slot], length: int, subject: int | None = None) -> torch.Tensor:
    """Bool ``(length,)``: the S* and concept tokens of ``subject`` (of every subject when None)."""
    mask = torch.zeros(length, dtype=torch.bool)
    for slot in slots:
        if subject is None or slot.subject == subject:
            positions = [p for p in slot.positions if 0 <= p < length]
            if len(positions) != len(slot.positions):
                raise ConditionError(
                    f"An S* slot of subject {slot.subject} points past the end of its {length}-token stream; "
                    "the slot metadata does not belong to this stream."
                )
            mask[positions] = True
    return mask
