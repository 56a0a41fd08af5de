"""The shipped tiny preset's trained weights: measured with the SubjectWorld oracle.

These tests fail on random weights (the oracle reads noise as nothing: identity 0), so they
guard that the package ships trained weights and that they keep working.
"""

from __future__ import annotations

import numpy as np
import pytest

from smg_sdk import SubjectPipeline
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.eval.oracle import Oracle
from smg_sdk.eval.world_metrics import SceneTruth, score


@pytest.fixture(scope="module")
def tiny():
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _scores(pipe, counts: tuple[int, ...], samples: int, text_only: bool = False) -> dict[str, float]:
    oracle, rows = Oracle(), []
    for sample in SubjectWorld("heldout", seed=0, subjects=counts).samples(samples):
        prompt, subjects = (sample.caption, []) if text_only else (sample.prompt, sample.subjects())
        image = pipe(prompt, subjects, seed=sample.index).images[0]
        rows.append(score(SceneTruth.from_sample(sample), oracle.read(image)))
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


def test_the_trained_base_draws_the_asked_background(tiny):
    """Stage 0 learned the scene: the background the instruction names (random weights: ~0)."""
    oracle, right = Oracle(), []
    for sample in SubjectWorld("heldout", seed=0, subjects=(1, 2)).samples(16):
        image = tiny(sample.caption, [], seed=sample.index).images[0]
        right.append(oracle.read(image).background == sample.scene.background)
    assert np.mean(right) >= 0.9, f"background right on {np.mean(right):.0%} of 16 text-only requests"


@pytest.mark.xfail(strict=True, reason="issue 10 open: the shipped preset draws rough shapes and its subject adapter "
                                       "does not carry identity (0 of 16 measured); see docs/training.md")
def test_shipped_preset_keeps_identity_on_held_out_one_subject_requests(tiny):
    """The issue-10 target: identity >= 80 % on 16 held-out one-subject requests at the default steps."""
    assert _scores(tiny, (1,), 16)["identity"] >= 0.8
