"""AlignGen's selective cross-modal mask, checked pair by pair on the built joint mask."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_sdk import ConditionSet, ConditionStream
from smg_sdk.attention.masks import JointAttentionMask, JointLayout
from smg_sdk.attention.rules import IsolateReferencesRule
from smg_sdk.backends.flux.positions import text_ids
from smg_plugins.aligngen.mask_rule import SelectiveCrossModalMask
from smg_plugins.aligngen.slots import SLOTS_KEY, Slot

IMAGE_TOKENS = 4


@st.composite
def condition_sets(draw):
    """Random text streams (some with S* slots) and reference streams of random modes and owners."""
    n_subjects = draw(st.integers(1, 3))
    streams, slots_meta = [], {}
    for t in range(draw(st.integers(1, 3))):
        length = draw(st.integers(1, 8))
        name = f"text{t}"
        streams.append(ConditionStream(name, torch.zeros(1, length, 2), text_ids(length)))
        if draw(st.booleans()):
            entries = []
            for _ in range(draw(st.integers(0, 3))):
                positions = draw(st.lists(st.integers(0, length - 1), min_size=1, max_size=3, unique=True))
                k = draw(st.integers(0, n_subjects - 1))
                entries.append(Slot(k, positions[0], tuple(positions[1:])).as_meta())
            slots_meta[name] = entries
    for r in range(draw(st.integers(0, 3))):
        length = draw(st.integers(1, 4))
        mode = draw(st.sampled_from(["concat", "cached"]))
        independent = mode == "cached" or draw(st.booleans())
        subject = draw(st.one_of(st.none(), st.integers(0, n_subjects - 1)))
        streams.append(ConditionStream(f"ref{r}", torch.zeros(1, length, 2), torch.zeros(length, 3), side="reference",
                                       subject=subject, mode=mode, independent=independent))
    order = draw(st.permutations(range(len(streams))))
    return ConditionSet([streams[i] for i in order], meta={SLOTS_KEY: slots_meta})


def exempt_tokens(conditions: ConditionSet, text: str, subject: int | None, bind: bool) -> set[int]:
    """Independent reading of the rule: which tokens of ``text`` may see a reference of ``subject``."""
    out = set()
    for entry in conditions.meta[SLOTS_KEY].get(text, []):
        if bind and subject is not None and entry["subject"] != subject:
            continue
        out |= {entry["sstar"], *entry["concept"]}
    return out


@settings(max_examples=150, deadline=None)
@given(conditions=condition_sets(), symmetric=st.booleans(), bind=st.booleans(), covered=st.booleans())
def test_selective_mask_blocks_exactly_the_right_pairs(conditions, symmetric, bind, covered):
    layout = JointLayout.build(conditions, IMAGE_TOKENS)
    texts = [g for g in layout.groups if g.kind == "text"]
    chosen = [texts[0].name] if covered else None
    mask = JointAttentionMask(layout)
    SelectiveCrossModalMask(text_streams=chosen, symmetric=symmetric, bind_subjects=bind).apply(mask, conditions, None)

    expected = torch.ones(layout.num_queries, layout.num_keys, dtype=torch.bool)
    for text in texts:
        if chosen is not None and text.name not in chosen:
            continue
        for ref in (g for g in layout.groups if g.kind == "reference"):
            free = exempt_tokens(conditions, text.name, ref.subject, bind)
            for i in range(text.length):
                if i in free:
                    continue
                expected[text.start + i, ref.span] = False  # text token -> reference keys
                if symmetric and ref.is_query:
                    expected[ref.span, text.start + i] = False  # reference queries -> text key
    assert torch.equal(mask.allowed[0], expected)
    assert not mask.bias.any()


def test_multi_reference_each_bound_to_its_concept_and_isolated():
    """Two subjects: S*/concept of subject k see reference k only; references do not see each other."""
    text = ConditionStream("prompt", torch.zeros(1, 8, 2), text_ids(8))
    refs = [ConditionStream(f"ref{k + 1}", torch.zeros(1, 2, 2), torch.zeros(2, 3), side="reference", subject=k)
            for k in range(2)]
    meta = {SLOTS_KEY: {"prompt": [Slot(0, 1, (2,)).as_meta(), Slot(1, 4, (5, 6)).as_meta()]}}
    conditions = ConditionSet([text, *refs], meta=meta)
    layout = JointLayout.build(conditions, IMAGE_TOKENS)
    mask = JointAttentionMask(layout)
    SelectiveCrossModalMask().apply(mask, conditions, None)
    IsolateReferencesRule().apply(mask, conditions, None)
    allowed = mask.allowed[0]
    r1, r2 = layout.group("ref1"), layout.group("ref2")
    assert allowed[:8, r1.start].nonzero().flatten().tolist() == [1, 2]
    assert allowed[:8, r2.start].nonzero().flatten().tolist() == [4, 5, 6]
    assert allowed[r1.start, :8].nonzero().flatten().tolist() == [1, 2]
    assert not allowed[r1.span, r2.span].any() and not allowed[r2.span, r1.span].any()
    image = layout.group("image")
    assert allowed[image.span].all()  # the image attends to everything
    assert mask.additive() is not None  # every query still has keys


def test_without_sstar_slots_the_class_word_tokens_are_exempt():
    """The ablation without S* (flux-text): the core's subject_tokens name the concept tokens the mask exempts."""
    text = ConditionStream("prompt", torch.zeros(1, 8, 2), text_ids(8))
    refs = [ConditionStream(f"ref{k + 1}", torch.zeros(1, 2, 2), torch.zeros(2, 3), side="reference", subject=k)
            for k in range(2)]
    conditions = ConditionSet([text, *refs], meta={"subject_tokens": {"prompt": {0: [3, 2], 1: [6]}}})
    layout = JointLayout.build(conditions, IMAGE_TOKENS)
    mask = JointAttentionMask(layout)
    SelectiveCrossModalMask().apply(mask, conditions, None)
    allowed = mask.allowed[0]
    r1, r2 = layout.group("ref1"), layout.group("ref2")
    assert allowed[:8, r1.start].nonzero().flatten().tolist() == [2, 3]
    assert allowed[:8, r2.start].nonzero().flatten().tolist() == [6]
    assert allowed[r2.start, :8].nonzero().flatten().tolist() == [6]  # symmetric
    # S* slots, when present, are what the rule reads
    with_slots = ConditionSet([text, *refs], meta={"subject_tokens": {"prompt": {0: [3, 2], 1: [6]}},
                                                   SLOTS_KEY: {"prompt": [Slot(0, 1, (2,)).as_meta()]}})
    mask = JointAttentionMask(JointLayout.build(with_slots, IMAGE_TOKENS))
    SelectiveCrossModalMask().apply(mask, with_slots, None)
    assert mask.allowed[0][:8, r1.start].nonzero().flatten().tolist() == [1, 2]
    assert not mask.allowed[0][:8, r2.start].any()
