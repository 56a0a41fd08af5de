"""The core's generic attention rules. Method-specific rules live in plugins."""

from __future__ import annotations

from ..conditions import ConditionSet
from ..interfaces import AttentionRule
from ..types import Request
from .masks import JointAttentionMask


class BlockRule(AttentionRule):
    """Queries matching ``queries`` may not attend to keys matching ``keys``.

    Selectors: a stream name, ``"image"``, ``"kind:text"``, ``"kind:reference"``, ``"*"``.
    Groups missing from a pass (no such stream in this request) are skipped.
    """

    needs_streams = needs_meta = reads_meta = ()  # selectors of absent groups are skipped

    def __init__(self, queries: str, keys: str):
        self.queries, self.keys = queries, keys

    def apply(self, mask: JointAttentionMask, conditions: ConditionSet, request: Request | None) -> None:
        present = {g.name for g in mask.layout.groups}
        if not _present(self.queries, present) or not _present(self.keys, present):
            return
        mask.block(queries=self.queries, keys=self.keys)


class IsolateReferencesRule(AttentionRule):
    """Reference streams do not attend to each other (each subject stays itself)."""

    needs_streams = needs_meta = reads_meta = ()

    def apply(self, mask: JointAttentionMask, conditions: ConditionSet, request: Request | None) -> None:
        refs = [g.name for g in mask.layout.groups if g.kind == "reference"]
        for a in refs:
            for b in refs:
                if a != b:
                    mask.block(queries=a, keys=b)


class StreamBiasRule(AttentionRule):
    """Add a constant ``bias`` to the logits of the selected keys (soft emphasis)."""

    needs_streams = needs_meta = reads_meta = ()  # selectors of absent groups are skipped

    def __init__(self, keys: str, bias: float, queries: str = "*"):
        self.keys, self.bias, self.queries = keys, float(bias), queries

    def apply(self, mask: JointAttentionMask, conditions: ConditionSet, request: Request | None) -> None:
        present = {g.name for g in mask.layout.groups}
        if _present(self.keys, present) and _present(self.queries, present):
            mask.add_bias(queries=self.queries, keys=self.keys, value=self.bias)


def _present(selector: str, names: set[str]) -> bool:
    return selector == "*" or selector.startswith("kind:") or selector in names
