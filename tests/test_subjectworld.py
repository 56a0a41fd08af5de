"""SubjectWorld: determinism, the split, layout grids, plans, instructions, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_sdk.data.subjectworld import (
    SubjectWorld, all_identities, layout_from_masks, parse_instruction, split_identities, typical_identity,
)
from smg_sdk.data.subjectworld.vocab import BACKGROUNDS, COLOURS, PATTERNS, SHAPES

indices = st.integers(min_value=0, max_value=10**6)
counts = st.integers(min_value=1, max_value=6)


def test_world_has_the_specified_size():
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8 and len(PATTERNS) >= 4 and len(BACKGROUNDS) >= 6
    assert sum(b[1] is not None for b in BACKGROUNDS.values()) >= 2  # some textured
    everything = all_identities()
    assert len(everything) >= 2000 and len(set(everything)) == len(everything)
    held = split_identities("heldout")
    assert len(held) >= 0.2 * len(everything)
    assert all(typical_identity(s) in split_identities("train") for s in SHAPES)


@settings(max_examples=25, deadline=None)
@given(index=indices, k=counts, seed=st.integers(0, 1000))
def test_same_seed_same_pixels_and_truth(index, k, seed):
    a = SubjectWorld("heldout", seed=seed, subjects=(k,))[index]
    b = SubjectWorld("heldout", seed=seed, subjects=(k,))[index]
    assert np.array_equal(a.target_pixels, b.target_pixels) and np.array_equal(a.masks, b.masks)
    assert a.scene == b.scene and a.plan_text() == b.plan_text()
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.reference_pixels, b.reference_pixels))
    assert not np.array_equal(a.target_pixels, SubjectWorld("heldout", seed=seed + 1, subjects=(k,))[index].target_pixels)


@pytest.mark.parametrize("kind", ["reference", "caption"])
def test_training_draws_never_show_a_held_out_identity(kind):
    world = SubjectWorld("train", kind=kind, seed=3)
    seen = {i for sample in world.samples(400) for i in sample.identities}
    assert seen and not any(i.held_out for i in seen)
    held = {i for sample in SubjectWorld("heldout", seed=3).samples(200) for i in sample.identities}
    assert held and all(i.held_out for i in held)


def test_captions_follow_class_priors_and_references_mostly_contradict_them():
    captions = [a for s in SubjectWorld("train", kind="caption", prior=0.9).samples(300) for a in s.aligned]
    references = [a for s in SubjectWorld("train", kind="reference").samples(300) for a in s.aligned]
    assert np.mean(captions) > 0.85 and np.mean(references) < 0.05


@settings(max_examples=30, deadline=None)
@given(index=indices, k=counts)
def test_layout_grid_matches_the_rendered_masks(index, k):
    sample = SubjectWorld("train", seed=1, subjects=(k,))[index]
    grid, masks = sample.layout, sample.masks
    cell = sample.scene.side // 8
    cover = masks.reshape(k, 8, cell, 8, cell).mean(axis=(2, 4))
    for s in range(k):
        assert (grid == s + 1).any(), "every subject owns a cell"
        assert (cover[s][grid == s + 1] > 0).all(), "a subject's cells hold its pixels"
    majority = cover.max(axis=0) >= 0.5
    assert (grid[majority] == cover.argmax(axis=0)[majority] + 1).all()
    assert (grid[cover.max(axis=0) == 0] == 0).all()


@settings(max_examples=30, deadline=None)
@given(index=indices, k=counts)
def test_plan_text_parses_with_the_music_plan_parser(index, k):
    from smg_plugins.music.plan_format import parse_plan

    sample = SubjectWorld("heldout", seed=2, subjects=(k,))[index]
    plan = parse_plan(sample.plan_text(), k)
    assert plan.layout.tolist() == sample.layout.tolist()
    assert plan.cot == sample.cot


@settings(max_examples=50, deadline=None)
@given(index=indices, k=counts)
def test_instruction_round_trips_and_never_names_an_identity(index, k):
    sample = SubjectWorld("heldout", seed=4, subjects=(k,))[index]
    parsed = parse_instruction(sample.prompt)
    assert parsed.relations == sample.scene.relations and parsed.background == sample.scene.background
    assert parsed.sizes == {n: p.size for n, p in enumerate(sample.scene.subjects, 1)}
    words = set(sample.prompt.replace(",", " ").split())
    assert not words & set(COLOURS) and not words & (set(PATTERNS) - {"plain"})


@settings(max_examples=20, deadline=None)
@given(index=indices, k=counts)
def test_references_differ_from_the_target_in_pose_and_background(index, k):
    sample = SubjectWorld("heldout", seed=5, subjects=(k,))[index]
    for placed, refs in zip(sample.scene.subjects, sample.reference_scenes):
        ref = refs[0]
        assert ref.background != sample.scene.background and ref.subjects[0].rotation != placed.rotation
        assert ref.subjects[0].identity == placed.identity
        assert abs((ref.subjects[0].box[2] - ref.subjects[0].box[0]) - (placed.box[2] - placed.box[0])) >= 12


def test_training_samples_and_requests():
    from smg_sdk import Request

    sample = SubjectWorld("train", seed=0, subjects=(2,))[0]
    ts = sample.training_sample()
    assert ts.prompt == sample.prompt and [s.class_word for s in ts.subjects] == [i.shape for i in sample.identities]
    Request(ts.prompt, ts.subjects, height=128, width=128)  # a valid request
    caption = SubjectWorld("train", kind="caption", seed=0)[0].training_sample()
    assert caption.subjects == [] and "<" not in caption.prompt


def test_layout_needs_at_least_one_cell_per_subject():
    masks = np.zeros((2, 128, 128), bool)
    masks[0, 0:3, 0:3] = True  # a tiny subject covering under 25 % of any cell still gets one
    masks[1, 64:128, 64:128] = True
    grid = layout_from_masks(masks)
    assert grid[0, 0] == 1 and (grid[4:, 4:] == 2).all() and (grid == 1).sum() == 1


@settings(max_examples=25, deadline=None)
@given(index=indices, k=st.integers(1, 4))
def test_described_captions_name_whole_identities_and_parse_back(index, k):
    world = SubjectWorld("train", kind="caption", seed=2, subjects=(k,), describe=0.5)
    sample = world[index]
    assert len(sample.described) == k and not any(i.held_out for i in sample.identities)
    for identity, full in zip(sample.identities, sample.described):
        assert not full or identity.describe().removeprefix("a ") in sample.caption
    assert any(sample.described) == any(c in sample.caption.split() for c in COLOURS)
    assert parse_instruction(sample.prompt).background == sample.scene.background
    assert all(i.describe().removeprefix("a ") in sample.described_caption for i in sample.identities)
    again = SubjectWorld("train", kind="caption", seed=2, subjects=(k,), describe=0.5)[index]
    assert again.caption == sample.caption and np.array_equal(again.target_pixels, sample.target_pixels)


def test_describe_zero_keeps_the_class_word_captions_of_before():
    plain = SubjectWorld("train", kind="caption", seed=5, subjects=(1, 2))
    zero = SubjectWorld("train", kind="caption", seed=5, subjects=(1, 2), describe=0.0)
    for a, b in zip(plain.samples(20), zero.samples(20)):
        assert a.caption == b.caption and np.array_equal(a.target_pixels, b.target_pixels)
        assert not any(c in a.caption.split() for c in COLOURS)
    described = [d for s in SubjectWorld("train", kind="caption", seed=5, describe=0.5).samples(200) for d in s.described]
    assert 0.4 < np.mean(described) < 0.6
    uniform = [s.aligned[0] for s in SubjectWorld("train", kind="caption", seed=5, subjects=(1,), describe=1.0).samples(200)]
    assert np.mean(uniform) < 0.1  # described subjects are uniform draws, not the class prior


def test_bad_world_arguments():
    for kwargs in ({"split": "test"}, {"kind": "video"}, {"subjects": (0,)}, {"subjects": (7,)}, {"side": 100},
                   {"describe": 1.5}, {"describe": -0.1}, {"describe": True}):
        with pytest.raises(ValueError):
            SubjectWorld(**kwargs)


def test_export_is_dreambench_readable(tmp_path):
    from smg_sdk.data.subjectworld.export import export
    from smg_sdk.eval import load_dreambench

    out = export(tmp_path / "sw", samples=6, subjects=(1, 2), views=2)
    bench = load_dreambench(out)
    assert bench.subjects and all(len(s.images) == 2 for s in bench.subjects)
    assert len(bench.object_prompts) == 25 and all("<1>" in p for p in bench.object_prompts)
    for p in bench.object_prompts:
        parse_instruction(p)
    lines = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all((out / line["target"]).is_file() for line in lines)
    assert all((out / ref).is_file() for line in lines for s in line["subjects"] for ref in s["references"])


def test_default_held_out_draws_are_those_of_before_the_aligned_set():
    """Prompts, identities, backgrounds and pixels of held-out draws, pinned (computed on main before
    ``identities`` existed): adding the aligned set changed no default draw."""
    whole = __import__("hashlib").sha256()
    for k in (1, 2, 3, 4):
        world = SubjectWorld("heldout", "reference", seed=0, subjects=(k,))
        for s in world.samples(6):
            whole.update((s.prompt + "|" + ",".join(i.name for i in s.identities) + "|" + s.scene.background).encode())
            whole.update(s.target_pixels.tobytes())
    assert whole.hexdigest() == "ceec17b25c59de35e78b324eae42a306f7d0be63ef3702f51daea1bef2499f4b"


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_the_aligned_set_is_the_held_out_scenes_with_typical_identities(k):
    default = SubjectWorld("heldout", "reference", seed=0, subjects=(k,))
    aligned = SubjectWorld("heldout", "reference", seed=0, subjects=(k,), identities="typical")
    paired = 0
    for a, d in zip(aligned.samples(16), default.samples(16)):
        assert a.identities == [typical_identity(i.shape) for i in a.identities] and all(a.aligned)
        assert len(set(a.identities)) == k and not any(d.aligned)  # distinct subjects; held-out ones never typical
        assert [p.identity for p in a.scene.subjects] == [r[0].subjects[0].identity for r in a.reference_scenes]
        if len({i.shape for i in d.identities}) == k:  # same random stream: the same scene, made typical
            paired += 1
            assert a.prompt == d.prompt and a.scene.background == d.scene.background
            assert [i.shape for i in a.identities] == [i.shape for i in d.identities]
            assert [p.box for p in a.scene.subjects] == [p.box for p in d.scene.subjects]
            assert np.array_equal(a.layout, d.layout)
    assert paired >= 5  # 7 to 16 of 16 at k = 1..4 (seed 0)
    from smg_sdk import SubjectWorldSamples

    assert SubjectWorldSamples(aligned, 4).settings["world"]["identities"] == "typical"  # a resume can tell them apart
    assert "identities" not in SubjectWorldSamples(default, 4).settings["world"]  # runs recorded before it still resume
    with pytest.raises(ValueError, match="identities"):
        SubjectWorld("heldout", "caption", identities="typical")
    with pytest.raises(ValueError, match="identities"):
        SubjectWorld("heldout", identities="aligned")
