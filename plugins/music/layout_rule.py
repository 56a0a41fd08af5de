"""MUSIC's regional attention: image tokens in subject k's cells attend to subject k's reference.

The plan's layout grid (8x8 by default) is resampled to the latent token grid of the request
(any output size: the token at the centre of each latent patch takes the id of the layout cell
under that centre; a subject too small to cover any token centre keeps the token nearest its
cells' centroid, so no subject is dropped). Then, for every batch row (each candidate has its
own plan) and every reference stream that belongs to a subject:

- tokens in the subject's own cells: unchanged (plus ``own_bias`` if set);
- tokens in another subject's cells: blocked from this reference (``mode="hard"``) or given
  ``bias`` (a negative logit offset) on it (``mode="soft"``);
- empty cells (``background``): ``"all"`` sees every reference (default), ``"none"`` sees
  none, ``"soft"`` adds ``background_bias`` on every reference.

Only image -> reference pairs change; text and the references themselves are untouched, and
rows without a plan (or without a layout) are left as they are.
"""

from __future__ import annotations

import math

import torch

from smg_sdk import (
    AttentionRule,
    AttentionRuleError,
    ConditionSet,
    JointAttentionMask,
    Request,
    as_layout,
    plans_for_rows,
)

MODES = ("hard", "soft")
"""How tokens in another subject's cells treat a reference: blocked, or a negative bias."""

BACKGROUND_MODES = ("all", "none", "soft")
"""What tokens in empty layout cells see: every reference, none, or every reference with a bias."""


def resample_layout(layout: torch.Tensor, rows: int, cols: int, keep_small: bool = True) -> torch.Tensor:
    """``layout`` at ``rows x cols``: each target cell takes the source cell under its centre.

    With ``keep_small``, a subject that vanishes in the resampling takes the target cell
    nearest the centroid of its source cells (if that cell's owner keeps another cell).
    """
    grid = as_layout(layout)
    src_rows, src_cols = grid.shape
    r_idx = ((torch.arange(rows, dtype=torch.float64) + 0.5) * src_rows / rows).floor().long().clamp(max=src_rows - 1)
    c_idx = ((torch.arange(cols, dtype=torch.float64) + 0.5) * src_cols / cols).floor().long().clamp(max=src_cols - 1)
    out = grid[r_idx][:, c_idx].clone()
    if not keep_small:
        return out
    for k in sorted(int(v) for v in grid.unique().tolist() if v > 0):
        if bool((out == k).any()):
            continue
        cells = (grid == k).nonzero().double()
        cy = (cells[:, 0].mean() + 0.5) / src_rows
        cx = (cells[:, 1].mean() + 0.5) / src_cols
        counts = torch.bincount(out.flatten(), minlength=int(grid.max()) + 1)
        ys = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
        xs = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
        dist = (ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2
        spare = (out == 0) | (counts[out] > 1)
        dist = dist.masked_fill(~spare, math.inf)
        if torch.isfinite(dist).any():
            flat = int(dist.flatten().argmin())
            out[flat // cols, flat % cols] = k
    return out


def token_grid(request: Request | None, image_tokens: int) -> tuple[int, int]:
    """The latent token grid of the image: from the request's size, else a square."""
    if request is not None:
        rows, cols = request.height // request.size_multiple, request.width // request.size_multiple
        if rows * cols == image_tokens:
            return rows, cols
    side = int(round(math.sqrt(image_tokens)))
    if side * side != image_tokens:
        raise AttentionRuleError(
            f"music-layout cannot tell the token grid of {image_tokens} image tokens; pass the request "
            "(height, width and size_multiple) to the rule."
        )
    return side, side


class LayoutAttentionRule(AttentionRule):
    """Layout-driven regional attention (registered as ``music-layout``); see the module docstring."""

    needs_streams = needs_meta = ()
    reads_meta = ("plan", "plans")  # rows without a plan are left as they are

    def __init__(
        self,
        mode: str = "hard",
        bias: float = -5.0,
        own_bias: float = 0.0,
        background: str = "all",
        background_bias: float = -2.0,
        keep_small: bool = True,
    ):
        if mode not in MODES:
            raise AttentionRuleError(f"music-layout mode must be one of {', '.join(MODES)}, not {mode!r}.")
        if background not in BACKGROUND_MODES:
            raise AttentionRuleError(
                f"music-layout background must be one of {', '.join(BACKGROUND_MODES)}, not {background!r}."
            )
        for name, value in (("bias", bias), ("own_bias", own_bias), ("background_bias", background_bias)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise AttentionRuleError(f"music-layout {name} must be a finite number, got {value!r}.")
        self.mode, self.bias, self.own_bias = mode, float(bias), float(own_bias)
        self.background, self.background_bias, self.keep_small = background, float(background_bias), bool(keep_small)

    def token_ids(self, layout: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """The subject id of every image token (row-major, like packed latents)."""
        return resample_layout(layout, rows, cols, self.keep_small).flatten()

    def apply(self, mask: JointAttentionMask, conditions: ConditionSet, request: Request | None) -> None:
        groups = {g.name: g for g in mask.layout.groups}
        image = groups.get("image")
        refs = [g for g in mask.layout.groups if g.kind == "reference" and g.subject is not None]
        if image is None or not refs:
            return
        plans = plans_for_rows(conditions, mask.batch_size)
        if all(p is None or p.layout is None for p in plans):
            return
        rows, cols = token_grid(request, image.length)
        ids = torch.full((mask.batch_size, image.length), -1, dtype=torch.int64)  # -1: row without a plan
        for b, plan in enumerate(plans):
            if plan is not None and plan.layout is not None:
                ids[b] = self.token_ids(plan.layout, rows, cols)
        planned = ids >= 0
        for ref in refs:
            k = ref.subject + 1
            own, empty = ids == k, ids == 0
            other = planned & ~own & ~empty
            blocked = other.clone() if self.mode == "hard" else torch.zeros_like(other)
            if self.background == "none":
                blocked |= empty
            if blocked.any():
                mask.block(queries="image", keys=ref.name, query_tokens=blocked)
            offsets = [(own, self.own_bias)]  # per-row token masks: each candidate follows its own plan
            if self.mode == "soft":
                offsets.append((other, self.bias))
            if self.background == "soft":
                offsets.append((empty, self.background_bias))
            for tokens, value in offsets:
                if value != 0 and tokens.any():
                    mask.add_bias(queries="image", keys=ref.name, value=value, query_tokens=tokens)


__all__ = ["BACKGROUND_MODES", "LayoutAttentionRule", "MODES", "resample_layout", "token_grid"]
