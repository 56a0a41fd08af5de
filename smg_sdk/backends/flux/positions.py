"""Position ids for FLUX's 3-axis RoPE, and the named policies for reference tokens.

FLUX gives every token an id ``(axis0, row, col)``. Text tokens are all ``(0, 0, 0)``; the
target image's packed latent at grid cell ``(i, j)`` is ``(0, i, j)``. A reference image's
tokens need ids that keep them distinguishable from the target. The three policies in use,
for a target grid of ``H x W`` packed tokens and reference ``k`` (0-based) of ``h x w``:

============  ==========================================  ==========================================
policy        id of reference token (i, j)                 used by
============  ==========================================  ==========================================
``omini``     ``(0, i, j - W)``: shifted left by the       OminiControl (subject-driven): the
              target's width, side by side with it         reference sits beside the target
``kontext``   ``(k + 1, i, j)``: same grid, first axis     FLUX.1 Kontext (one index per
              is the subject number (1, 2, ...)            reference here)
``uno``       ``(0, i + H + sum(h_<k), j + W + sum(w_<k))``  UNO: each reference continues the
              diagonal: references sit below-right of      diagonal after the target and the
              the target and of each other                 references before it
============  ==========================================  ==========================================

Example, target 2x2, one 2x2 reference (rows list ids of token (i, j) in row-major order)::

    target   (0,0,0) (0,0,1) (0,1,0) (0,1,1)
    omini    (0,0,-2) (0,0,-1) (0,1,-2) (0,1,-1)
    kontext  (1,0,0) (1,0,1) (1,1,0) (1,1,1)
    uno      (0,2,2) (0,2,3) (0,3,2) (0,3,3)

**Compact references** (OminiControl2, "compact token representation": position scaling). A
reference encoded at ``1/n`` of its box side (``reference_scale = 1/n``) has ``n`` times fewer
rows and columns; its token at reduced grid index ``(i, j)`` gets the position ``(i * n, j * n)``
before the policy's offset, so the reference spans the same coordinate range as the target.
Example, target 4x4, one reference at scale 1/2 (2x2 tokens), ``kontext``::

    (1,0,0) (1,0,2) (1,2,0) (1,2,2)

Under ``uno`` the next reference starts after ``rows * n`` (``cols * n``) of the one before.

The sign of ``omini`` has bitten users: OminiControl's reference code uses a negative
column offset (``position_delta = [0, -W]``); a positive one also runs but puts the
reference on the other side, which trained adapters do not expect.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from ...errors import ConditionError

PositionPolicy = Literal["omini", "kontext", "uno"]
POLICIES: tuple[str, ...] = ("omini", "kontext", "uno")


def ids_for_transformer(ids: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Position ids ``(L, 3)`` on ``device`` in float32 (float64 kept), whatever the model's dtype.

    RoPE ids are integers well past 256 at real sizes (the ``uno`` policy with 4 references
    at 1024 px reaches 319), and bfloat16 keeps 8 significant bits: 257 rounds to 256, so
    neighbouring tokens would share a position. diffusers' ``FluxPosEmbed`` computes the
    rotary tables in float32/64 from float ids, so the ids never take the model's dtype.
    """
    return ids.to(device=device, dtype=torch.float64 if ids.dtype == torch.float64 else torch.float32)


def grid_ids(rows: int, cols: int, axis0: float = 0.0, row_offset: float = 0.0, col_offset: float = 0.0,
             step: float = 1.0) -> torch.Tensor:
    """``(rows * cols, 3)`` ids of a packed-latent grid, row-major, like FluxPipeline's.

    Cell ``(i, j)`` is at ``(axis0, i * step + row_offset, j * step + col_offset)``; ``step`` is
    1 except for compact references (``step = 1 / reference_scale``, see the module docstring).
    """
    ids = torch.zeros(rows, cols, 3)
    ids[..., 0] = axis0
    ids[..., 1] = torch.arange(rows)[:, None] * step + row_offset
    ids[..., 2] = torch.arange(cols)[None, :] * step + col_offset
    return ids.reshape(rows * cols, 3)


def text_ids(length: int) -> torch.Tensor:
    """FLUX text tokens all sit at (0, 0, 0)."""
    return torch.zeros(length, 3)


def reference_ids(
    policy: str,
    target_grid: tuple[int, int],
    reference_grids: Sequence[tuple[int, int]],
    step: int = 1,
) -> list[torch.Tensor]:
    """Ids for each reference grid under ``policy``; see the module docstring for the table.

    ``step``: the compact-reference factor ``n`` (a reference encoded at ``1/n`` resolution);
    each grid index is multiplied by it, so the reference covers the target's coordinate range.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ConditionError(f"Position step must be a positive integer (1 / reference_scale), not {step!r}.")
    if policy not in POLICIES:
        raise ConditionError(f"Unknown position policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    target_rows, target_cols = target_grid
    out: list[torch.Tensor] = []
    row_acc, col_acc = target_rows, target_cols
    for k, (rows, cols) in enumerate(reference_grids):
        if policy == "omini":
            out.append(grid_ids(rows, cols, col_offset=-target_cols, step=step))
        elif policy == "kontext":
            out.append(grid_ids(rows, cols, axis0=k + 1, step=step))
        else:
            out.append(grid_ids(rows, cols, row_offset=row_acc, col_offset=col_acc, step=step))
            row_acc += rows * step
            col_acc += cols * step
    return out
