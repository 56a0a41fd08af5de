"""AlignGen's Deviation Extraction Module: only S* changes, per-subject Redux, any text stream."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aligngen_fixtures import one_torch_thread, quiet, redux_encoder, tiny_backend  # noqa: F401
from conftest import make_image
from smg_sdk import ConditionEncoder, ConditionError, ConditionSet, ConditionStream, Request, Subject, SubjectPipeline
from smg_sdk.backends.flux.encoders import VAEReferenceEncoder
from smg_sdk.backends.flux.positions import text_ids
from smg_plugins.aligngen.dem import DeviationExtractionModule
from smg_plugins.aligngen.mask_rule import SelectiveCrossModalMask
from smg_plugins.aligngen.slots import SLOTS_KEY, Slot, read_slots, slots_meta
from smg_plugins.aligngen.text_encoder import AlignGenTextEncoder

W = 32


def dem(**kw) -> DeviationExtractionModule:
    torch.manual_seed(0)
    return DeviationExtractionModule(width=W, heads=4, **kw)


@st.composite
def synthetic(draw):
    """A text stream with random S* slots, one raw Redux stream per subject, and an unrelated stream."""
    batch = draw(st.integers(1, 2))
    length = draw(st.integers(4, 24))
    n_subjects = draw(st.integers(1, 3))
    free = list(range(length))
    slots = []
    for _ in range(draw(st.integers(1, 3))):
        if len(free) < 2:
            break
        size = draw(st.integers(2, min(4, len(free))))
        picked = draw(st.permutations(free))[:size]
        free = [p for p in free if p not in picked]
        slots.append(Slot(draw(st.integers(0, n_subjects - 1)), picked[0], tuple(sorted(picked[1:]))))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    text = ConditionStream("words", torch.randn(batch, length, W, generator=g), text_ids(length))
    other = ConditionStream("other", torch.randn(batch, 3, W, generator=g), text_ids(3))
    redux = [ConditionStream(f"redux{k + 1}", torch.randn(1, 5, W, generator=g), text_ids(5), side="raw", subject=k,
                             meta={"redux": True}) for k in range(n_subjects)]
    return ConditionSet([other, text, *redux], pooled=torch.zeros(batch, W), meta=slots_meta("words", slots)), slots


@settings(max_examples=40, deadline=None)
@given(case=synthetic(), write_concepts=st.booleans())
def test_dem_changes_only_the_slots_it_should(case, write_concepts):
    conditions, slots = case
    module = dem(stream="words", write_concepts=write_concepts)
    out = module.aggregate(conditions, None)
    before, after = conditions.get("words").tokens, out.get("words").tokens
    written = {s.sstar for s in slots} | ({p for s in slots for p in s.concept} if write_concepts else set())
    changed = {i for i in range(before.shape[1]) if not torch.equal(before[:, i], after[:, i])}
    assert changed == written
    assert torch.equal(out.get("other").tokens, conditions.get("other").tokens)
    assert [s.name for s in out] == ["other", "words"]  # the raw Redux streams were consumed
    # each S* is the module's output on [S*, concept] with its own subject's Redux tokens
    for slot in slots:
        redux = conditions.get(f"redux{slot.subject + 1}").tokens.expand(before.shape[0], -1, -1)
        expected = module(before[:, slot.positions], redux)[:, 0]
        assert torch.allclose(after[:, slot.sstar], expected, atol=1e-6)
    assert torch.equal(conditions.get("words").tokens, before)  # the input set is not modified


def test_dem_on_real_encodings_binds_each_subject_to_its_redux(tiny_backend, redux_encoder):
    request = Request("a photo of <1> next to <2>", [Subject(make_image(0), "robot"), Subject(make_image(1), "guitar")],
                      height=64, width=64)
    text = AlignGenTextEncoder(t5_dim=W, clip_dim=W).encode(request, tiny_backend)
    redux = redux_encoder.encode(request, tiny_backend)
    conditions = ConditionSet.merge([text, redux])
    module = dem()
    out = module.aggregate(conditions, request)
    slots = read_slots(conditions, "prompt")
    # replacing subject 2's reference changes subject 2's S* only
    other = redux_encoder.encode(Request(request.prompt, [request.subjects[0], Subject(make_image(5), "guitar")],
                                         height=64, width=64), tiny_backend)
    out2 = module.aggregate(ConditionSet.merge([text, other]), request)
    a, b = out.get("prompt").tokens, out2.get("prompt").tokens
    assert torch.equal(a[:, slots[0].sstar], b[:, slots[0].sstar])
    assert not torch.allclose(a[:, slots[1].sstar], b[:, slots[1].sstar])
    assert "redux1" not in out and "redux2" not in out


def test_gradients_reach_dem_and_sstar(tiny_backend, redux_encoder):
    request = Request("<1> on the beach", [Subject(make_image(0), "robot")], height=64, width=64)
    enc = AlignGenTextEncoder(t5_dim=W, clip_dim=W)
    module = dem()
    out = module.aggregate(ConditionSet.merge([enc.encode(request, tiny_backend),
                                               redux_encoder.encode(request, tiny_backend)]), request)
    out.get("prompt").tokens.square().sum().backward()
    assert enc.token.t5.grad.abs().sum() > 0
    assert module.cross_attn.in_proj_weight.grad.abs().sum() > 0


def test_missing_inputs_are_explained(tiny_backend):
    request = Request("<1> on the beach", [Subject(make_image(0), "robot")], height=64, width=64)
    text = AlignGenTextEncoder(t5_dim=W, clip_dim=W).encode(request, tiny_backend)
    with pytest.raises(ConditionError, match="no Redux tokens"):
        dem().aggregate(text, request)
    with pytest.raises(ConditionError, match="does not produce"):
        dem(stream="mllm").aggregate(text, request)
    with pytest.raises(ConditionError, match="divisible"):
        DeviationExtractionModule(width=W, heads=5)
    bad = ConditionSet(text.streams, text.pooled, {SLOTS_KEY: {"prompt": [{"subject": 0}]}})
    with pytest.raises(ConditionError, match="malformed"):
        dem().aggregate(bad, request)


class ExtraTextEncoder(ConditionEncoder):
    """Another plugin's text-side stream (say, MLLM features already pooled to the text width)."""

    def __init__(self, name: str = "extra", length: int = 6):
        self.name, self.length = name, length

    def encode(self, request, backend):
        g = torch.Generator().manual_seed(7)
        tokens = torch.randn(1, self.length, backend.text_width, generator=g)
        return ConditionSet([ConditionStream(self.name, tokens, text_ids(self.length))])


def test_dem_composes_with_another_plugins_text_stream(tiny_backend, redux_encoder):
    """AlignGen on stream 't5-prompt' beside an 'extra' text stream that comes first in the sequence."""
    request = Request("a photo of <1> next to <2>", [Subject(make_image(0), "robot"), Subject(make_image(1), "guitar")],
                      height=64, width=64)
    text_encoder = AlignGenTextEncoder(stream_name="t5-prompt", t5_dim=W, clip_dim=W)
    module = dem(stream="t5-prompt")
    pipe = quiet(SubjectPipeline(
        tiny_backend,
        [ExtraTextEncoder(), text_encoder, redux_encoder, VAEReferenceEncoder(mode="concat", position="omini")],
        [module],
        [SelectiveCrossModalMask()],
    ))
    raw = SubjectPipeline(tiny_backend, pipe.encoders).encode(request)
    conditions = pipe.encode(request)
    assert [s.name for s in conditions] == ["extra", "t5-prompt", "ref1", "ref2"]
    assert torch.equal(conditions.get("extra").tokens, raw.get("extra").tokens)
    slots = read_slots(conditions, "t5-prompt")
    before, after = raw.get("t5-prompt").tokens, conditions.get("t5-prompt").tokens
    changed = {i for i in range(before.shape[1]) if not torch.equal(before[:, i], after[:, i])}
    assert changed == {s.sstar for s in slots}
    # the selective mask found the slots in the second text stream, offset by the first
    from smg_sdk.attention.masks import JointAttentionMask, JointLayout

    layout = JointLayout.build(conditions, 16)
    mask = JointAttentionMask(layout)
    SelectiveCrossModalMask().apply(mask, conditions, request)
    t5 = layout.group("t5-prompt")
    ref1 = layout.group("ref1")
    allowed = mask.allowed[0, t5.start: t5.stop, ref1.start].nonzero().flatten().tolist()
    assert allowed == list(slots[0].positions)
    assert not mask.allowed[0, layout.group("extra").span, ref1.start].any()
    images = pipe(request.prompt, request.subjects, num_inference_steps=2, seed=0, height=64, width=64).images
    assert images[0].size == (64, 64)
