"""Plans as people and prompts see them: layout checks, text rendering, coloured-grid pictures.

A :class:`~smg_sdk.types.Plan` carries a layout grid: an ``(rows, cols)`` integer tensor whose
cells hold subject numbers (``k`` = subject ``<k>``, 0 = no subject). This module holds what
every planner and every tool that shows plans needs, so plugins do not each invent it:

- :func:`as_layout` turns a nested list / array / tensor into a checked layout;
- :func:`layout_text` writes it as rows of numbers (the form prompts and logs use);
- :func:`layout_image` draws it as a coloured grid with the numbers in the cells and an
  optional legend (subject names), so a person can see a plan at a glance;
- :func:`plans_for_rows` tells an attention rule which plan each batch row of a condition
  set follows (the pipeline batches several candidates, each with its own plan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image, ImageDraw

from .errors import PlanError

if TYPE_CHECKING:  # pragma: no cover
    from .conditions import ConditionSet

EMPTY_COLOUR = (236, 236, 236)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 200, 200), (240, 50, 230), (170, 110, 40), (128, 128, 0), (0, 0, 128),
)
"""Colours of subjects 1, 2, ... (cycled): well separated, readable under white digits."""


def as_layout(layout: Any) -> torch.Tensor:
    """``layout`` as a 2-D ``int64`` CPU tensor of non-negative subject numbers; else :class:`PlanError`."""
    if isinstance(layout, torch.Tensor):
        tensor = layout.detach().cpu()
    else:
        try:
            tensor = torch.as_tensor(layout)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PlanError(f"A plan layout must be a grid of integers (nested lists or a tensor): {exc}") from exc
    if tensor.ndim != 2 or tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise PlanError(
            f"A plan layout must be a non-empty 2-D grid (rows x cols), got shape {tuple(tensor.shape)}."
        )
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        if tensor.dtype == torch.bool or not torch.equal(tensor, tensor.round()):
            raise PlanError("A plan layout must hold whole subject numbers (0 = empty, k = subject <k>).")
    tensor = tensor.to(torch.int64)
    if bool((tensor < 0).any()):
        raise PlanError("A plan layout holds a negative number; use 0 for empty cells and k for subject <k>.")
    return tensor


def check_layout_subjects(layout: torch.Tensor, num_subjects: int) -> None:
    """Raise :class:`PlanError` unless ids are in ``0..num_subjects`` and every subject has a cell."""
    ids = set(int(v) for v in layout.unique().tolist())
    bad = sorted(i for i in ids if i > num_subjects)
    if bad:
        raise PlanError(
            f"The layout names subject(s) {bad} but the request has {num_subjects}; use ids 1..{num_subjects}."
        )
    missing = [k for k in range(1, num_subjects + 1) if k not in ids]
    if missing:
        raise PlanError(f"Subject(s) {missing} have no cell in the layout; every subject needs at least one.")


def layout_text(layout: torch.Tensor) -> str:
    """Rows of space-separated numbers, one row per line (``"0 1 1 0\\n0 2 2 0"``)."""
    return "\n".join(" ".join(str(int(v)) for v in row) for row in as_layout(layout).tolist())


def subject_colour(subject_id: int) -> tuple[int, int, int]:
    """The colour subject ``subject_id`` is drawn with (0 = empty)."""
    return EMPTY_COLOUR if subject_id <= 0 else PALETTE[(subject_id - 1) % len(PALETTE)]


def layout_image(
    layout: torch.Tensor,
    cell: int = 24,
    names: Sequence[str | None] | None = None,
    title: str | None = None,
) -> Image.Image:
    """The layout as a coloured grid, each cell labelled with its id, plus a legend of ``names``.

    ``names[k-1]`` labels subject ``k`` in the legend (e.g. the subjects' class words).
    """
    grid = as_layout(layout)
    rows, cols = grid.shape
    ids = sorted(i for i in set(int(v) for v in grid.unique().tolist()) if i > 0)
    legend_ids = sorted(set(ids) | set(range(1, len(names) + 1))) if names else ids
    line = 12
    top = line + 2 if title else 0
    width = max(cols * cell, 96)
    height = top + rows * cell + 4 + line * len(legend_ids)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((2, 1), title[: width // 6], fill="black")
    for r in range(rows):
        for c in range(cols):
            value = int(grid[r, c])
            box = (c * cell, top + r * cell, (c + 1) * cell - 1, top + (r + 1) * cell - 1)
            draw.rectangle(box, fill=subject_colour(value), outline=(255, 255, 255))
            if value > 0 and cell >= 10:
                draw.text((box[0] + cell // 2 - 3, box[1] + cell // 2 - 6), str(value), fill="white")
    y = top + rows * cell + 4
    for k in legend_ids:
        name = names[k - 1] if names and k - 1 < len(names) and names[k - 1] else f"subject {k}"
        draw.rectangle((2, y + 2, 10, y + 10), fill=subject_colour(k))
        draw.text((14, y), f"<{k}> {name}"[: (width - 14) // 6], fill="black")
        y += line
    return image


def plans_for_rows(conditions: "ConditionSet", batch_size: int) -> list[Any]:
    """The plan each of ``batch_size`` rows follows: ``meta["plans"]`` (one per row) or ``meta["plan"]``.

    Each entry is what the metadata holds: a :class:`~smg_sdk.types.Plan`, or None for a row
    without a plan (this module does not import :mod:`smg_sdk.types`, which imports it).

    :class:`~smg_sdk.pipeline.SubjectPipeline` sets ``meta["plans"]`` when it batches
    candidates with different plans through one sampler call; a condition set built by hand
    may carry a single ``meta["plan"]`` for all rows. No plan at all gives ``[None] * batch_size``.
    """
    plans = conditions.meta.get("plans")
    if plans is not None:
        plans = list(plans)
        if len(plans) != batch_size:
            raise PlanError(
                f"conditions.meta['plans'] has {len(plans)} entries for a batch of {batch_size}; give one plan per row."
            )
        return plans
    return [conditions.meta.get("plan")] * batch_size


__all__ = [
    "EMPTY_COLOUR", "PALETTE", "as_layout", "check_layout_subjects", "layout_image", "layout_text",
    "plans_for_rows", "subject_colour",
]
