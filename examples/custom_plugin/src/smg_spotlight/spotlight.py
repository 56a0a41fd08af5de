"""``spotlight``: references are visible only inside a centred box of the image."""

from __future__ import annotations

import torch

from smg_sdk import AttentionRule, ConditionError, ConditionSet, Request


def centre_box(rows: int, cols: int, fraction: float) -> torch.Tensor:
    """Bool ``(rows * cols,)`` mask, row-major, of the centred box covering ``fraction`` per side."""
    box = torch.zeros(rows, cols, dtype=torch.bool)
    h, w = max(1, round(rows * fraction)), max(1, round(cols * fraction))
    top, left = (rows - h) // 2, (cols - w) // 2
    box[top: top + h, left: left + w] = True
    return box.flatten()


class Spotlight(AttentionRule):
    """Image tokens outside the centred box may not attend to any reference stream."""

    needs_streams = needs_meta = reads_meta = ()  # no reference stream: nothing to restrict

    def __init__(self, fraction: float = 0.5):
        if not 0 < fraction <= 1:
            raise ConditionError(f"spotlight fraction must be in (0, 1], got {fraction!r}.")
        self.fraction = float(fraction)

    def apply(self, mask, conditions: ConditionSet, request: Request | None) -> None:
        if request is None or not any(g.kind == "reference" for g in mask.layout.groups):
            return
        rows, cols = request.height // request.size_multiple, request.width // request.size_multiple
        if rows * cols != mask.layout.group("image").length:
            raise ConditionError(f"spotlight: a {rows}x{cols} token grid does not match the image tokens.")
        box = centre_box(rows, cols, self.fraction)
        mask.restrict_keys(queries="image", keys="kind:reference", query_tokens=box)
