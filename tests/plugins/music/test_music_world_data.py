"""SubjectWorld as planner data: ground truth carried over exactly, unseen combinations kept out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smg_plugins.music.data import decimate
from smg_plugins.music.plan_format import format_plan, parse_plan
from smg_plugins.music.world_data import (
    UNSEEN_PAIRS,
    WorldPlannerData,
    is_unseen_combination,
    music_sample,
    placements,
    relation_kinds,
)
from smg_sdk import ConfigError, SubjectWorld

WORLD = SubjectWorld(split="train", subjects=(1, 2, 3, 4))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 5000))
def test_music_sample_teaches_the_world_plan_exactly(index):
    truth = WORLD[index]
    sample = music_sample(truth)
    assert sample.cot == f"{truth.cot} {placements(truth)}"  # SubjectWorld's CoT, then where each goes
    assert format_plan(sample.plan()) == truth.plan_text().replace(truth.cot, sample.cot)
    assert sample.instruction == truth.prompt and [s.class_word for s in sample.subjects] == [
        p.identity.shape for p in truth.scene.subjects]
    parsed = parse_plan(truth.plan_text(), len(truth.scene.subjects))
    assert np.array_equal(parsed.layout.numpy(), truth.layout)
    for box, placed in zip(sample.boxes, truth.scene.subjects):
        assert np.allclose(np.array(box) * truth.scene.side, placed.box)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 10_000))
def test_placements_name_each_subjects_anchor_third(index):
    """Scenes put subjects on distinct cells of a 3 x 3 anchor grid: the names must tell them apart."""
    truth = SubjectWorld(split="train", subjects=(2, 3, 4, 5, 6))[index]
    names = [clause.split(" goes at the ")[1] for clause in placements(truth).rstrip(".").split(", ")]
    assert len(set(names)) == len(names) == len(truth.scene.subjects)
    for name, placed in zip(names, truth.scene.subjects):
        row, col = name.split()
        x, y = placed.centre
        assert abs(y / truth.scene.side - {"top": 1 / 6, "middle": 1 / 2, "bottom": 5 / 6}[row]) < 0.1
        assert abs(x / truth.scene.side - {"left": 1 / 6, "centre": 1 / 2, "right": 5 / 6}[col]) < 0.1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 3000))
def test_decimated_world_samples_keep_each_remaining_subjects_cells(index):
    """SubjectWorld subjects never overlap, so a decimated layout is the truth minus the dropped subject."""
    truth = SubjectWorld(split="train", subjects=(3, 4))[index]
    sample = music_sample(truth)
    previous = sample
    for smaller in decimate(sample):
        assert smaller.cot.count(" goes at the ") == smaller.num_subjects  # the dropped one's place goes too
        kept = [k for k in range(previous.num_subjects) if previous.boxes[k] in smaller.boxes]
        assert len(kept) == smaller.num_subjects
        for new, old in enumerate(kept, start=1):
            assert np.array_equal(smaller.layout.numpy() == new, previous.layout.numpy() == old + 1)
        previous = smaller


def test_seen_pool_never_holds_an_unseen_combination_and_unseen_always_does():
    seen = WorldPlannerData(40, "train", (3, 4), "seen")
    unseen = WorldPlannerData(12, "heldout", (3, 4), "unseen")
    assert len(seen) == 40 and len(unseen) == 12
    assert not any(is_unseen_combination(relation_kinds(seen.world_sample(i))) for i in range(len(seen)))
    assert all(is_unseen_combination(relation_kinds(unseen.world_sample(i))) for i in range(len(unseen)))
    # the rule is the pair, not the kinds alone: each kind of a pair does occur in the seen pool
    kinds = set().union(*(relation_kinds(seen.world_sample(i)) for i in range(len(seen))))
    assert set().union(*UNSEEN_PAIRS) <= kinds
    # deterministic, and items carry their identities' split
    assert WorldPlannerData(40, "train", (3, 4), "seen").indices == seen.indices
    assert unseen[0].extras["split"] == "heldout" and seen[0].extras["split"] == "train"


@pytest.mark.parametrize("kinds, unseen", [
    ({"left of", "below"}, True), ({"left of", "below", "between"}, True), ({"left of", "above"}, False),
    ({"right of", "below"}, False), ({"below"}, False), (set(), False),
])
def test_unseen_means_holding_both_kinds_of_the_pair(kinds, unseen):
    assert is_unseen_combination(kinds) is unseen


@pytest.mark.parametrize("kwargs, word", [
    (dict(size=0), "size"),
    (dict(size=3, combinations="rare"), "combinations"),
    (dict(size=3, subjects=(1, 2), combinations="unseen"), "count >= 3"),
])
def test_bad_settings_are_config_errors(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        WorldPlannerData(**kwargs)
