"""Position ids: the documented table, each policy's geometry, and FluxPipeline as reference."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_sdk.errors import ConditionError, SMGError
from smg_sdk.backends.flux.positions import POLICIES, grid_ids, reference_ids, text_ids

SETTINGS = settings(max_examples=120, deadline=None)

grids = st.tuples(st.integers(1, 9), st.integers(1, 9))


def _ids(rows: list[tuple[int, int, int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _id_set(ids: torch.Tensor) -> set[tuple[float, float, float]]:
    return {tuple(float(v) for v in row) for row in ids}


# --------------------------------------------------------------------------- the docstring table

TABLE = {
    "target": [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)],
    "omini": [(0, 0, -2), (0, 0, -1), (0, 1, -2), (0, 1, -1)],
    "kontext": [(1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)],
    "uno": [(0, 2, 2), (0, 2, 3), (0, 3, 2), (0, 3, 3)],
}


def test_target_ids_match_table():
    assert torch.equal(grid_ids(2, 2), _ids(TABLE["target"]))


@pytest.mark.parametrize("policy", ["omini", "kontext", "uno"])
def test_reference_ids_match_table(policy):
    (ids,) = reference_ids(policy, (2, 2), [(2, 2)])
    assert ids.shape == (4, 3)
    assert torch.equal(ids, _ids(TABLE[policy]))


def test_uno_second_reference_continues_the_diagonal():
    first, second = reference_ids("uno", (2, 2), [(2, 2), (1, 3)])
    assert torch.equal(first, _ids(TABLE["uno"]))
    assert torch.equal(second, _ids([(0, 4, 4), (0, 4, 5), (0, 4, 6)]))


def test_kontext_axis0_counts_references_from_one():
    ids = reference_ids("kontext", (2, 2), [(1, 1), (1, 1), (1, 1)])
    assert [float(t[0, 0]) for t in ids] == [1.0, 2.0, 3.0]


def test_text_ids_are_zero():
    assert torch.equal(text_ids(5), torch.zeros(5, 3))
    assert text_ids(0).shape == (0, 3)


@pytest.mark.parametrize("policy", ["Omini", "", "diagonal", "flux"])
def test_unknown_policy_raises_condition_error(policy):
    with pytest.raises(ConditionError) as info:
        reference_ids(policy, (2, 2), [(2, 2)])
    assert isinstance(info.value, SMGError)
    assert "omini" in str(info.value) and "\n" not in str(info.value)


def test_no_references_gives_empty_list():
    for policy in POLICIES:
        assert reference_ids(policy, (3, 4), []) == []


# --------------------------------------------------------------------------- diffusers is the reference


@given(rows=st.integers(1, 24), cols=st.integers(1, 24))
@SETTINGS
def test_grid_ids_match_flux_pipeline(rows, cols):
    expected = FluxPipeline._prepare_latent_image_ids(1, rows, cols, "cpu", torch.float32)
    ours = grid_ids(rows, cols)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    assert torch.equal(ours, expected)


# --------------------------------------------------------------------------- properties


@given(target=grids, refs=st.lists(grids, min_size=1, max_size=4))
@SETTINGS
def test_omini_is_target_grid_shifted_left_by_width(target, refs):
    H, W = target
    out = reference_ids("omini", target, refs)
    assert len(out) == len(refs)
    for (h, w), ids in zip(refs, out):
        plain = grid_ids(h, w)
        assert ids.shape == (h * w, 3)
        assert torch.equal(ids[:, :2], plain[:, :2])  # axis0 = 0, rows unchanged
        assert torch.equal(ids[:, 2], plain[:, 2] - W)  # columns j - W
        assert float(ids[:, 2].min()) == -W
        assert float(ids[:, 2].max()) == w - 1 - W
        if w <= W:  # a reference no wider than the target sits entirely left of it
            assert bool((ids[:, 2] < 0).all())


@given(target=grids, refs=st.lists(grids, min_size=1, max_size=4))
@SETTINGS
def test_kontext_axis0_is_k_plus_one_on_a_plain_grid(target, refs):
    out = reference_ids("kontext", target, refs)
    for k, ((h, w), ids) in enumerate(zip(refs, out)):
        assert bool((ids[:, 0] == k + 1).all())
        assert torch.equal(ids[:, 1:], grid_ids(h, w)[:, 1:])


@given(target=grids, refs=st.lists(grids, min_size=1, max_size=4))
@SETTINGS
def test_uno_references_lie_beyond_target_and_each_other(target, refs):
    H, W = target
    out = reference_ids("uno", target, refs)
    row_start, col_start = H, W
    cells: set[tuple[float, float]] = set()
    for (h, w), ids in zip(refs, out):
        assert bool((ids[:, 0] == 0).all())
        assert bool((ids[:, 1] >= H).all()) and bool((ids[:, 2] >= W).all())
        # each reference is a plain grid starting where the previous ones ended
        assert torch.equal(ids, grid_ids(h, w, row_offset=row_start, col_offset=col_start))
        here = {(float(r), float(c)) for r, c in ids[:, 1:]}
        assert len(here) == h * w
        assert not (here & cells), "two uno references overlap in (row, col)"
        cells |= here
        row_start += h
        col_start += w


@pytest.mark.parametrize("policy", POLICIES)
@given(target=grids, refs=st.lists(grids, min_size=1, max_size=4))
@SETTINGS
def test_no_reference_id_equals_a_target_id(policy, target, refs):
    H, W = target
    if policy == "omini":
        # omini shifts by the target's width only: a reference wider than the target would
        # reach back into the target's columns, so the property is stated for w <= W.
        refs = [(h, min(w, W)) for h, w in refs]
    target_ids = _id_set(grid_ids(H, W))
    for ids in reference_ids(policy, target, refs):
        assert not (_id_set(ids) & target_ids)


def test_omini_wider_reference_does_overlap_target():
    """Documents the limit of ``omini``: the shift is the target's width, nothing more."""
    (ids,) = reference_ids("omini", (2, 2), [(2, 3)])
    assert _id_set(ids) & _id_set(grid_ids(2, 2)) == {(0.0, 0.0, 0.0), (0.0, 1.0, 0.0)}


@pytest.mark.parametrize("policy", ["kontext", "uno"])
@given(target=grids, refs=st.lists(grids, min_size=2, max_size=4))
@SETTINGS
def test_references_are_distinct_from_each_other(policy, target, refs):
    seen: set[tuple[float, float, float]] = set()
    for ids in reference_ids(policy, target, refs):
        here = _id_set(ids)
        assert not (here & seen)
        seen |= here
