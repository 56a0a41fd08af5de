"""A ``generate`` stopping criterion that ends each planner sample at its first departure from the plan format."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import StoppingCriteria

from .plan_format import prefix_problem


class FormatWatch(StoppingCriteria):
    """Stops each sequence whose new text can no longer become a valid plan (a ``generate`` stopping criterion).

    ``prompt_length``: tokens before the new ones; ``num_subjects``: the request's subject count,
    or one count per sequence (a batch of different requests); ``reasons[i]``: why sequence ``i``
    was stopped (:func:`.plan_format.prefix_problem`), None while it was not. Each call decodes
    the new tokens of the sequences still running.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, num_subjects: int | Sequence[int], rows: int, cols: int):
        self.tokenizer, self.prompt_length = tokenizer, prompt_length
        self.num_subjects, self.rows, self.cols = num_subjects, rows, cols
        self.reasons: list[str | None] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if len(self.reasons) != input_ids.shape[0]:
            self.reasons = [None] * input_ids.shape[0]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i, row in enumerate(input_ids[:, self.prompt_length:]):
            if self.reasons[i] is None:
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                count = self.num_subjects if isinstance(self.num_subjects, int) else self.num_subjects[i]
                self.reasons[i] = prefix_problem(text, count, self.rows, self.cols)
            done[i] = self.reasons[i] is not None
        return done


__all__ = ["FormatWatch"]
