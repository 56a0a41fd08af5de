"""The heuristic planner: a deterministic layout from spatial words, subject count and sizes.

It is MUSIC's fallback when the MLLM's plan is unusable, and a planner in its own right
(``music-heuristic``). How a layout is made:

1. :func:`~smg_plugins.music.spatial.parse_spatial` reads relations and anchors.
2. Relations become two orders, horizontal (left -> right) and vertical (top -> bottom); an
   edge that would contradict earlier ones (a cycle) is dropped and noted.
3. Each subject's column band is its rank in the horizontal order (longest path); bands are
   disjoint, so "A left of B" always gives A's cells strictly left of B's. Subjects with only
   vertical relations span the bands of the subjects they relate to; subjects with no relation
   at all are lined up left to right after the others. Rows work the same way.
4. Inside its band, a subject gets a box scaled by its relative size (from its reference
   image, and words such as "small"), is drawn behind-to-front and large-to-small, and the
   grid cells whose centres fall in a box take its id. A subject left with no cell gets the
   free cell of its band nearest its box centre, so every subject has at least one.

Plans after the first are variations (size and position jittered inside each band, seeded by
the generator), so N plans give test-time scaling N different candidates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from smg_sdk import Plan, Planner, Request, RequestError

from .boxes import Box, box_area
from .prompting import compose_prompt, subject_names
from .spatial import ABOVE, LEFT, NEAR, SpatialParse, parse_spatial

def estimate_sizes(images: Sequence[Image.Image], min_scale: float = 0.45) -> list[float]:
    """Relative subject sizes in ``[min_scale, 1]`` from how much of each reference it fills.

    The background is the median border colour; the subject is what differs from it. This
    suits product-style references (one subject on a plain ground); on busy photos every
    subject comes out the same size, which is the safe default.
    """
    raw = []
    for image in images:
        pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        background = np.median(border, axis=0)
        foreground = np.abs(pixels - background).sum(axis=-1) > 60
        raw.append(float(np.sqrt(max(foreground.mean(), 1e-3))))
    top = max(raw, default=1.0)
    return [min(1.0, max(min_scale, r / top)) for r in raw]


class _Order:
    """A strict partial order grown edge by edge; contradicting edges are refused."""

    def __init__(self, n: int):
        self.succ: list[set[int]] = [set() for _ in range(n)]
        self.touched: set[int] = set()

    def _reaches(self, a: int, b: int) -> bool:
        stack, seen = [a], set()
        while stack:
            x = stack.pop()
            if x == b:
                return True
            if x not in seen:
                seen.add(x)
                stack.extend(self.succ[x])
        return False

    def add(self, a: int, b: int) -> bool:
        if a == b or self._reaches(b, a):
            return False
        self.succ[a].add(b)
        self.touched.update((a, b))
        return True

    def levels(self) -> dict[int, int]:
        """Longest-path rank of every subject that has an edge."""
        level = {k: 0 for k in self.touched}
        changed = True
        while changed:
            changed = False
            for a in self.touched:
                for b in self.succ[a]:
                    if level[b] < level[a] + 1:
                        level[b] = level[a] + 1
                        changed = True
        return level


@dataclass
class LayoutSolution:
    """A layout grid, the box each subject was given, and what had to be given up."""

    layout: torch.Tensor
    boxes: list[Box]
    conflicts: list[str] = field(default_factory=list)


def solve_layout(
    num_subjects: int,
    spatial: SpatialParse,
    sizes: Sequence[float],
    rows: int = 8,
    cols: int = 8,
    rng: random.Random | None = None,
    jitter: float = 0.0,
    fill: float = 0.9,
) -> LayoutSolution:
    """The grid for ``spatial`` (see the module docstring); ``rng`` + ``jitter`` make variations."""
    n = num_subjects
    conflicts: list[str] = []
    horizontal, vertical, depth = _Order(n), _Order(n), _Order(n)
    for rel in spatial.relations:
        if rel.kind in (LEFT, NEAR):
            ok = horizontal.add(rel.a, rel.b)
        elif rel.kind == ABOVE:
            ok = vertical.add(rel.a, rel.b)
        else:  # FRONT: a in front of b -> b higher, drawn first
            ok = vertical.add(rel.b, rel.a) and depth.add(rel.b, rel.a)
        if not ok:
            conflicts.append(f"ignored '{rel.describe()}': it contradicts an earlier relation")
    for anchor in spatial.anchors:
        a = anchor.subject
        same = lambda attr: {  # noqa: E731
            x.subject for x in spatial.anchors if getattr(x, attr) == getattr(anchor, attr)
        }
        for other in range(n):
            if anchor.horizontal == "left" and other not in same("horizontal"):
                horizontal.add(a, other)
            if anchor.horizontal == "right" and other not in same("horizontal"):
                horizontal.add(other, a)
            if anchor.vertical == "top" and other not in same("vertical"):
                vertical.add(a, other)
            if anchor.vertical == "bottom" and other not in same("vertical"):
                vertical.add(other, a)

    xl, yl = horizontal.levels(), vertical.levels()
    free = [k for k in list(spatial.mentions) + list(range(n)) if k not in xl and k not in yl]
    free = list(dict.fromkeys(free))
    start = max(xl.values(), default=-1) + 1
    for offset, k in enumerate(free):
        xl[k] = start + offset
    nx = max(xl.values(), default=0) + 1
    ny = max(yl.values(), default=0) + 1
    if nx > cols or ny > rows:
        conflicts.append(f"{nx}x{ny} subject bands do not fit a {cols}x{rows} grid; some orders are approximate")

    neighbours: dict[int, set[int]] = {k: set() for k in range(n)}
    for a in range(n):
        for b in vertical.succ[a]:
            neighbours[a].add(b)
            neighbours[b].add(a)

    slots: list[Box] = []
    for k in range(n):
        if k in xl:
            x_lo = x_hi = xl[k]
        else:
            spans = [xl[m] for m in neighbours[k] if m in xl]
            x_lo, x_hi = (min(spans), max(spans)) if spans else (0, nx - 1)
        y_lo, y_hi = (yl[k], yl[k]) if k in yl else (0, ny - 1)
        slots.append((x_lo / nx, y_lo / ny, (x_hi + 1) / nx, (y_hi + 1) / ny))

    scales = [min(1.0, max(0.05, s)) for s in sizes]
    boxes: list[Box] = []
    for k, (x0, y0, x1, y1) in enumerate(slots):
        scale = fill * scales[k]
        if rng is not None and jitter > 0:
            scale = min(1.0, max(0.2, scale * rng.uniform(1 - jitter, 1 + jitter / 2)))
        w, h = (x1 - x0) * scale, (y1 - y0) * scale
        dx, dy = ((x1 - x0) - w) / 2, ((y1 - y0) - h) / 2
        if rng is not None and jitter > 0:
            dx, dy = rng.uniform(0, 2 * dx), rng.uniform(0, 2 * dy)
        boxes.append((x0 + dx, y0 + dy, x0 + dx + w, y0 + dy + h))

    dl = depth.levels()
    order = sorted(range(n), key=lambda k: (dl.get(k, 0), -box_area(boxes[k]), k))
    layout = rasterize(boxes, rows, cols, order=order, regions=slots, conflicts=conflicts)
    return LayoutSolution(layout, boxes, conflicts)


def rasterize(
    boxes: Sequence[Box],
    rows: int = 8,
    cols: int = 8,
    order: Sequence[int] | None = None,
    regions: Sequence[Box] | None = None,
    conflicts: list[str] | None = None,
) -> torch.Tensor:
    """A layout grid from subject boxes: cells whose centre is in a box take its id.

    Boxes are drawn in ``order`` (default: largest first, so small subjects stay visible). A
    subject left without a cell gets the cell of its ``region`` (default: its box) nearest its
    box centre that is empty or whose owner has cells to spare.
    """
    n = len(boxes)
    order = list(order) if order is not None else sorted(range(n), key=lambda k: (-box_area(boxes[k]), k))
    regions = list(regions) if regions is not None else list(boxes)
    layout = torch.zeros(rows, cols, dtype=torch.int64)
    for k in order:
        layout[_cells_in(boxes[k], rows, cols)] = k + 1
    for k in order:
        if not bool((layout == k + 1).any()):
            cell = _free_cell(layout, regions[k], boxes[k], rows, cols)
            if cell is None:
                if conflicts is not None:
                    conflicts.append(f"<{k + 1}> had no free cell in its band; placed outside it")
                cell = _free_cell(layout, (0.0, 0.0, 1.0, 1.0), boxes[k], rows, cols)
            if cell is not None:
                layout[cell] = k + 1
    return layout


def _centres(count: int) -> torch.Tensor:
    return (torch.arange(count, dtype=torch.float64) + 0.5) / count


def _cells_in(box: Box, rows: int, cols: int) -> torch.Tensor:
    ys, xs = _centres(rows), _centres(cols)
    inside_y = (ys >= box[1]) & (ys < box[3])
    inside_x = (xs >= box[0]) & (xs < box[2])
    return inside_y[:, None] & inside_x[None, :]


def _free_cell(layout: torch.Tensor, slot: Box, box: Box, rows: int, cols: int) -> tuple[int, int] | None:
    """The cell of ``slot`` nearest ``box``'s centre that is empty or whose owner has cells to spare."""
    counts = torch.bincount(layout.flatten(), minlength=int(layout.max()) + 1)
    inside = _cells_in(slot, rows, cols)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best, best_key = None, None
    for r, c in inside.nonzero().tolist():
        owner = int(layout[r, c])
        if owner and counts[owner] <= 1:
            continue
        dist = ((c + 0.5) / cols - cx) ** 2 + ((r + 0.5) / rows - cy) ** 2
        key = (owner != 0, dist)
        if best_key is None or key < best_key:
            best, best_key = (r, c), key
    return best


def region_words(box: Box) -> str:
    """Where a box sits, in words ("the bottom left", "the top centre")."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    h = "left" if cx < 0.4 else "right" if cx > 0.6 else "centre"
    v = "top" if cy < 0.4 else "bottom" if cy > 0.6 else "middle"
    return "the centre" if (h, v) == ("centre", "middle") else f"the {v} {h}"


def size_word(box: Box) -> str:
    area = box_area(box)
    return "large" if area > 0.25 else "medium" if area > 0.08 else "small"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def describe_plan(names: Sequence[str], spatial: SpatialParse, boxes: Sequence[Box]) -> str:
    """A chain of thought for a layout: who is who, the relations, where each goes."""
    who = ", ".join(f"<{k + 1}> is {_article(name)} {name}" for k, name in enumerate(names))
    lines = [who + "."]
    if spatial.relations:
        lines.append(" ".join(rel.describe() + "." for rel in spatial.relations))
    lines.append(
        " ".join(f"<{k + 1}> goes in {region_words(b)}, {size_word(b)}." for k, b in enumerate(boxes))
    )
    return "\n".join(lines)


class HeuristicPlanner(Planner):
    """Plans from the instruction's spatial words (registered as ``music-heuristic``).

    ``rows``/``cols``: the layout grid; ``jitter``: how much plans after the first vary;
    ``use_image_sizes``: scale subjects by how much of their reference they fill;
    ``cot_in_prompt``: append the chain of thought to the prompt the encoders see.
    """

    suggested_rules = ("music-layout",)

    def __init__(
        self,
        rows: int = 8,
        cols: int = 8,
        jitter: float = 0.2,
        min_scale: float = 0.45,
        use_image_sizes: bool = True,
        cot_in_prompt: bool = True,
    ):
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                raise RequestError(f"{name} must be an integer between 1 and 64, got {value!r}.")
        if not 0 <= jitter <= 1 or not 0 < min_scale <= 1:
            raise RequestError("jitter must be in [0, 1] and min_scale in (0, 1].")
        self.rows, self.cols, self.jitter, self.min_scale = rows, cols, float(jitter), float(min_scale)
        self.use_image_sizes, self.cot_in_prompt = bool(use_image_sizes), bool(cot_in_prompt)

    def sizes(self, request: Request, spatial: SpatialParse) -> list[float]:
        """Each subject's relative size: from its reference, times any size word, in [min_scale, 1]."""
        n = len(request.subjects)
        base = [1.0] * n
        if self.use_image_sizes:
            base = estimate_sizes([s.pil() for s in request.subjects], self.min_scale)
        hinted = [base[k] * spatial.size_hints.get(k, 1.0) for k in range(n)]
        top = max(hinted, default=1.0)
        return [min(1.0, max(self.min_scale, s / top)) for s in hinted]

    def plan(self, request: Request, num_plans: int, generator: torch.Generator | None = None) -> list[Plan]:
        return self.plans(request, num_plans, generator, source="heuristic")

    def plans(
        self, request: Request, num_plans: int, generator: torch.Generator | None = None, source: str = "heuristic",
        first_variant: int = 0,
    ) -> list[Plan]:
        """``num_plans`` plans; variant 0 is the canonical layout, later ones are jittered."""
        n = len(request.subjects)
        if n == 0:
            return [Plan(notes={"source": source, "reason": "no subjects to lay out"}) for _ in range(num_plans)]
        names = subject_names(request)
        spatial = parse_spatial(request.prompt, [s.class_word for s in request.subjects])
        sizes = self.sizes(request, spatial)
        base_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        out = []
        for i in range(first_variant, first_variant + num_plans):
            rng = None if i == 0 else random.Random(base_seed * 1009 + i)
            solution = solve_layout(n, spatial, sizes, self.rows, self.cols, rng=rng, jitter=self.jitter)
            cot = describe_plan(names, spatial, solution.boxes)
            notes = {
                "source": source,
                "variant": i,
                "relations": [r.describe() for r in spatial.relations],
                "anchors": [
                    f"<{a.subject + 1}> {' '.join(w for w in (a.vertical, a.horizontal) if w)}" for a in spatial.anchors
                ],
                "sizes": [round(s, 3) for s in sizes],
                "boxes": [[round(v, 4) for v in box] for box in solution.boxes],
            }
            if solution.conflicts:
                notes["conflicts"] = solution.conflicts
            prompt = compose_prompt(request, cot) if self.cot_in_prompt else None
            out.append(Plan(cot=cot, layout=solution.layout, prompt=prompt, notes=notes))
        return out


__all__ = [
    "HeuristicPlanner", "LayoutSolution", "describe_plan", "estimate_sizes", "rasterize", "region_words",
    "size_word", "solve_layout",
]
