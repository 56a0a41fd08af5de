"""Hypothesis strategies for smg-sdk's value types: subjects, requests, streams, condition sets, plans."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from ..conditions import ConditionSet, ConditionStream
from ..errors import DataError
from ..types import Plan, Request, Subject

CLASS_WORDS = ("dog", "cat", "backpack", "teapot", "robot", "guitar", "duck toy", "sneaker", "chrysanthemum")


@st.composite
def images(draw, min_size: int = 16, max_size: int = 64) -> Image.Image:
    """Small RGB images made of coloured blocks (cheap, varied, deterministic per draw)."""
    side = draw(st.sampled_from([s for s in (16, 32, 48, 64) if min_size <= s <= max_size] or [min_size]))
    seed = draw(st.integers(0, 2**16))
    blocks = np.random.default_rng(seed).integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((side // 4, side // 4, 1), dtype=np.uint8)), "RGB")


@st.composite
def subjects(draw, class_words=CLASS_WORDS) -> Subject:
    word = draw(st.one_of(st.none(), st.sampled_from(class_words)))
    return Subject(draw(images()), word)


@st.composite
def requests(draw, max_subjects: int = 3, sizes=(32, 48, 64), max_steps: int = 4, size_multiple: int = 16) -> Request:
    """Valid requests whose prompts name every subject once with ``<k>`` (or not at all)."""
    n = draw(st.integers(0, max_subjects))
    subs = [draw(subjects()) for _ in range(n)]
    words = draw(st.lists(st.sampled_from(["a", "photo", "of", "on", "the", "beach", "next", "to", "left"]),
                          min_size=1, max_size=6))
    named = draw(st.booleans()) and n > 0
    if named:
        slots = [f"<{k}>" for k in draw(st.permutations(range(1, n + 1)))]
        words = words + slots
        words = draw(st.permutations(words))
    size = [s for s in sizes if s % size_multiple == 0]
    return Request(
        prompt=" ".join(words), subjects=subs, height=draw(st.sampled_from(size)), width=draw(st.sampled_from(size)),
        num_inference_steps=draw(st.integers(1, max_steps)), seed=draw(st.integers(0, 2**31 - 1)),
        size_multiple=size_multiple,
    )


@st.composite
def condition_streams(draw, side: str | None = None, batch: int = 1, width: int = 8, max_length: int = 6,
                      name: str | None = None) -> ConditionStream:
    side = side or draw(st.sampled_from(["text", "reference"]))
    length = draw(st.integers(1, max_length))
    seed = draw(st.integers(0, 2**16))
    tokens = torch.randn(batch, length, width, generator=torch.Generator().manual_seed(seed))
    mode = draw(st.sampled_from(["concat", "cached"])) if side == "reference" else "concat"
    independent = mode == "cached" or draw(st.booleans())
    return ConditionStream(
        name=name or draw(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)),
        tokens=tokens, position_ids=torch.zeros(length, 3), side=side,
        subject=draw(st.one_of(st.none(), st.integers(0, 2))), independent=independent, mode=mode,
    )


@st.composite
def condition_sets(draw, max_text: int = 2, max_references: int = 3, batch: int = 1, text_width: int = 8,
                   reference_width: int = 16, pooled_width: int = 8) -> ConditionSet:
    n_text = draw(st.integers(1, max_text))
    n_ref = draw(st.integers(0, max_references))
    streams = [draw(condition_streams("text", batch, text_width, name=f"text{i}")) for i in range(n_text)]
    streams += [draw(condition_streams("reference", batch, reference_width, name=f"ref{i + 1}")) for i in range(n_ref)]
    return ConditionSet(streams, pooled=torch.zeros(batch, pooled_width))


@st.composite
def plans(draw, num_subjects: int = 2, grid: tuple[int, int] = (8, 8)) -> Plan:
    """Valid plans: every subject appears in at least one cell of the grid."""
    rows, cols = grid
    if num_subjects > rows * cols:
        raise DataError(f"plans(num_subjects={num_subjects}) do not fit a {rows}x{cols} grid; "
                        "give a grid with at least as many cells.")
    cells = draw(st.lists(st.integers(0, num_subjects), min_size=rows * cols, max_size=rows * cols))
    anchors = draw(st.permutations(range(rows * cols)))[:num_subjects]
    for k, cell in enumerate(anchors, start=1):  # distinct cells: every subject keeps one
        cells[cell] = k
    layout = torch.tensor(cells).reshape(rows, cols)
    cot = draw(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "Zs"]), max_size=60))
    return Plan(cot=cot, layout=layout)
