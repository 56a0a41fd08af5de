"""AlignGen S*: insertion before each concept, positions from the offset mapping, T5/CLIP encoding."""

from __future__ import annotations

import re
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aligngen_fixtures import one_torch_thread, tiny_backend  # noqa: F401
from conftest import make_image
from smg_sdk import ConditionError, Request, Subject
from smg_plugins.aligngen.slots import read_slots
from smg_plugins.aligngen.text_encoder import AlignGenTextEncoder
from smg_plugins.aligngen.tokens import mark_prompt

IMAGE = make_image(0)
# Known words, words the tiny T5 splits into several pieces, and multi-word concepts.
CONCEPTS = ["robot", "dog", "guitar", "chrysanthemum", "acoustic guitar", "teddy bear", "qzxv", "Robot",
            "sunglasses", "rc car"]
FILLER = ["a", "photo", "of", "next", "to", "on", "the", "beach", "with", "and", "in", "snow", "red", "zyzzyva"]


@pytest.fixture(scope="module")
def backend(tiny_backend):
    return tiny_backend


def encoder(**kw) -> AlignGenTextEncoder:
    return AlignGenTextEncoder(t5_dim=32, clip_dim=32, **kw)


concept_word = st.one_of(st.sampled_from(CONCEPTS), st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=14))
filler = st.lists(st.one_of(st.sampled_from(FILLER), st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=9)),
                  max_size=4)
separator = st.sampled_from([" ", ", ", " ", ". ", " - "])


@st.composite
def prompts(draw):
    """A prompt with placeholders (each subject once or more, random order) and its subjects."""
    n = draw(st.integers(1, 3))
    words = [draw(concept_word) for _ in range(n)]
    order = draw(st.permutations(range(1, n + 1)))
    order = list(order) + draw(st.lists(st.integers(1, n), max_size=1))
    parts = []
    for k in order:
        parts.append(" ".join(draw(filler)))
        parts.append(f"<{k}>")
    parts.append(" ".join(draw(filler)))
    pieces = [p for p in parts if p]
    text = ""
    for piece in pieces:
        text = f"{text}{draw(separator) if text else ''}{piece}"
    return text, words


def decoded(tokenizer, ids: list[int]) -> str:
    return "".join(tokenizer.convert_ids_to_tokens(ids)).replace("▁", " ").strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=prompts())
def test_sstar_and_concept_positions_random_prompts(backend, case):
    prompt, words = case
    request = Request(prompt, [Subject(IMAGE, w) for w in words], height=64, width=64)
    enc = encoder(max_sequence_length=256)
    conditions = enc.encode(request, backend)
    stream = conditions.get("prompt")
    ids = stream.meta["input_ids"].tolist()
    slots = read_slots(conditions, "prompt")
    expected_subjects = [int(k) - 1 for k in re.findall(r"<(\d+)>", prompt)]
    assert [s.subject for s in slots] == expected_subjects
    for slot in slots:
        assert ids[slot.sstar] == stream.meta["marker_id"]
        assert list(slot.concept) == list(range(slot.sstar + 1, slot.sstar + 1 + len(slot.concept)))
        assert decoded(backend.tokenizer_2, [ids[i] for i in slot.concept]) == words[slot.subject]
    # the marker appears exactly at the S* slots and nowhere else
    assert [i for i, t in enumerate(ids) if t == stream.meta["marker_id"]] == [s.sstar for s in slots]
    # CLIP: one S* id right before each concept; without them the ids are FluxPipeline's own
    tok = backend.tokenizer
    clip_ids, clip_positions = enc.clip_ids(request, backend)
    assert len(clip_ids) == 77 and all(clip_ids[p] == tok.bos_token_id for p in clip_positions)
    if len(tok(request.text_prompt)["input_ids"]) + len(slots) <= 77:  # nothing truncated
        assert len(clip_positions) == len(slots)
        for p, slot in zip(clip_positions, slots):
            assert clip_ids[p + 1] == tok(words[slot.subject], add_special_tokens=False)["input_ids"][0]
        stripped = [t for i, t in enumerate(clip_ids) if i not in clip_positions] + [tok.pad_token_id] * len(slots)
        assert stripped == tok(request.text_prompt, padding="max_length", max_length=77, truncation=True)["input_ids"]
    # the core convention: subject_tokens lists S* and concept tokens of each subject
    for k in set(expected_subjects):
        mine = sorted(p for s in slots if s.subject == k for p in s.positions)
        assert conditions.meta["subject_tokens"]["prompt"][k] == mine


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(["robot", "dog", "chrysanthemum", "acoustic guitar", "teddy bear"]), min_size=1,
                      max_size=2, unique=True), before=filler,
       after=filler)
def test_positions_without_placeholders(backend, words, before, after):
    prompt = " ".join([*before, " and ".join(words), *after])
    request = Request(prompt, [Subject(IMAGE, w) for w in words], height=64, width=64)
    conditions = encoder(max_sequence_length=256).encode(request, backend)
    ids = conditions.get("prompt").meta["input_ids"].tolist()
    slots = read_slots(conditions, "prompt")
    found = {}
    for slot in slots:
        found[slot.subject] = decoded(backend.tokenizer_2, [ids[i] for i in slot.concept])
    # each subject's class word is found (its first whole-word occurrence)
    assert found == dict(enumerate(words))


def test_marked_prompt_and_offsets_example(backend):
    subjects = [Subject(IMAGE, "chrysanthemum"), Subject(IMAGE, "acoustic guitar")]
    request = Request("a photo of <1> next to <2>.", subjects, height=64, width=64)
    marked = mark_prompt(request, "<extra_id_0>")
    assert marked.text == "a photo of <extra_id_0> chrysanthemum next to <extra_id_0> acoustic guitar."
    conditions = encoder().encode(request, backend)
    tokens = backend.tokenizer_2.convert_ids_to_tokens(conditions.get("prompt").meta["input_ids"].tolist())
    slots = read_slots(conditions, "prompt")
    assert [tokens[i] for i in slots[0].concept] == ["▁", "c", "hrysanthemum"]  # split in three pieces
    assert [tokens[i] for i in slots[1].concept] == ["▁acoustic", "▁guitar"]


def test_t5_with_marker_embedding_equals_flux_encoding(backend):
    """S* set to the marker's own embedding gives exactly FLUX's encoding of the marked prompt."""
    enc = encoder()
    request = Request("<1> on the beach with <2>", [Subject(IMAGE, "robot"), Subject(IMAGE, "chrysanthemum")],
                      height=64, width=64)
    marker_id = backend.tokenizer_2.convert_tokens_to_ids("<extra_id_0>")
    enc.token.initialize(backend.text_encoder_2.get_input_embeddings().weight[marker_id],
                         backend.text_encoder.get_input_embeddings().weight[backend.tokenizer.bos_token_id])
    conditions = enc.encode(request, backend)
    flux = backend.encode_prompt(conditions.get("prompt").meta["text"], 64)
    assert torch.allclose(conditions.get("prompt").tokens, flux.embeds, atol=1e-5)
    ids, positions = enc.clip_ids(request, backend)
    assert len(ids) == 77 and len(positions) == 2
    plain = backend.text_encoder(torch.tensor([ids])).pooler_output
    assert torch.allclose(conditions.pooled, plain, atol=1e-6)


def test_sstar_is_learnable_and_changes_only_through_its_slots(backend):
    enc = encoder()
    request = Request("a photo of <1>", [Subject(IMAGE, "robot")], height=64, width=64)
    before = enc.encode(request, backend)
    with torch.no_grad():
        enc.token.t5.add_(torch.randn(32))
        enc.token.clip.add_(torch.randn(32))
    after = enc.encode(request, backend)
    assert not torch.allclose(before.get("prompt").tokens, after.get("prompt").tokens)
    assert not torch.allclose(before.pooled, after.pooled)
    after.get("prompt").tokens.sum().backward()
    assert enc.token.t5.grad is not None and enc.token.t5.grad.abs().sum() > 0
    assert enc.token.clip.grad is None or enc.token.clip.grad.abs().sum() == 0  # pooled not in the loss


def test_plain_clip_when_clip_token_off(backend):
    enc = encoder(clip_token=False)
    request = Request("a photo of <1>", [Subject(IMAGE, "robot")], height=64, width=64)
    pooled = enc.encode(request, backend).pooled
    assert torch.allclose(pooled, backend.encode_prompt(request.text_prompt).pooled, atol=1e-6)


def test_initialisation_is_lazy_and_saved(backend):
    enc = encoder(init_word="robot")
    assert not enc.token.is_initialized
    enc.encode(Request("a <1>", [Subject(IMAGE, "dog")], height=64, width=64), backend)
    rid = backend.tokenizer_2("robot", add_special_tokens=False)["input_ids"]
    assert enc.token.is_initialized
    assert torch.allclose(enc.token.t5, backend.text_encoder_2.get_input_embeddings().weight[rid].mean(0))
    other = encoder(init_word="robot")
    other.load_state_dict(enc.state_dict())
    assert other.token.is_initialized


@pytest.mark.parametrize(
    "prompt,words,kw,match",
    [
        ("a <extra_id_0> and <1>", ["dog"], {}, "reserves for S"),
        ("a dog", ["dog", "dog"], {}, "placeholders"),
        (" ".join(["word"] * 70) + " <1>", ["dog"], {}, "max_sequence_length"),
        ("a <1>", ["dog"], {"marker": "not-a-token"}, "one existing token"),
    ],
)
def test_bad_input_is_explained(backend, prompt, words, kw, match):
    request = Request(prompt, [Subject(IMAGE, w) for w in words], height=64, width=64)
    with pytest.raises(ConditionError, match=match):
        encoder(**kw).encode(request, backend)


def test_width_mismatch_is_explained(backend):
    request = Request("a <1>", [Subject(IMAGE, "dog")], height=64, width=64)
    with pytest.raises(ConditionError, match="t5_dim=32"):
        AlignGenTextEncoder().encode(request, backend)
