"""``word-emphasis``: scale the prompt tokens that name the subjects."""

from __future__ import annotations

from smg_sdk import Aggregator, ConditionError, ConditionSet, Request


class WordEmphasis(Aggregator):
    """Multiply the tokens of each subject's class word in ``stream`` by ``factor``.

    The core text encoder records, per subject, which token positions spell its class word
    (``meta["subject_tokens"][stream]``); only those tokens change.
    """

    # Declared contracts, checked when a pipeline is composed: the stream is rewritten in place
    # (a missing one is left alone), so nothing is needed or made; the subject tokens are read.
    needs_streams = makes_streams = drops_streams = ()
    needs_meta = writes_meta = ()
    reads_meta = ("subject_tokens",)

    def __init__(self, factor: float = 1.5, stream: str = "prompt"):
        if not factor > 0:
            raise ConditionError(f"word-emphasis factor must be > 0, got {factor!r}.")
        self.factor = float(factor)
        self.stream = stream

    def aggregate(self, conditions: ConditionSet, request: Request | None) -> ConditionSet:
        if self.stream not in conditions:
            return conditions.with_streams([])
        positions = sorted({p for ps in conditions.meta.get("subject_tokens", {}).get(self.stream, {}).values()
                            for p in ps})
        stream = conditions.get(self.stream)
        tokens = stream.tokens.clone()
        tokens[:, positions] = tokens[:, positions] * self.factor
        return conditions.replace(self.stream, stream.with_tokens(tokens))
