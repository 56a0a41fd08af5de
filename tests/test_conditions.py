"""ConditionStream / ConditionSet contracts, and mapping subject class words to tokens."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from smg_sdk.conditions import ConditionSet, ConditionStream
from smg_sdk.prompts import subject_char_spans, tokens_in_spans
from smg_sdk.errors import ConditionError, SMGError
from smg_sdk.backends.flux.positions import grid_ids, text_ids
from smg_sdk.types import Request, Subject

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def text_stream(name="prompt", length=3, batch=1, **kw):
    return ConditionStream(name, torch.randn(batch, length, 8), text_ids(length), "text", **kw)


def ref_stream(name="ref", length=4, batch=1, **kw):
    return ConditionStream(name, torch.randn(batch, length, 4), grid_ids(2, length // 2), "reference", **kw)


def _one_line(err: Exception) -> None:
    assert isinstance(err, SMGError)
    assert str(err).strip() and "\n" not in str(err)


# --------------------------------------------------------------------------- ConditionStream


def test_valid_streams():
    s = text_stream(length=5, batch=2, subject=1, adapter="lora")
    assert s.length == 5 and s.side == "text" and s.mode == "concat" and not s.independent
    r = ref_stream(mode="cached", independent=True, subject=0)
    assert r.length == 4 and r.mode == "cached"
    raw = ConditionStream("mllm", torch.randn(1, 4, 6, 16), torch.zeros(0), "raw")  # raw: any shapes
    assert raw.side == "raw"
    empty = text_stream(length=0)
    assert empty.length == 0


@pytest.mark.parametrize("shape", [(4, 8), (8,), (1, 1, 4, 8), ()])
@pytest.mark.parametrize("side", ["text", "reference"])
def test_tokens_must_be_3d(shape, side):
    with pytest.raises(ConditionError) as info:
        ConditionStream("s", torch.zeros(shape), text_ids(4), side)
    _one_line(info.value)


@pytest.mark.parametrize("pos_shape", [(4, 2), (5, 3), (3, 3), (4,), (1, 4, 3), (3, 4), (0, 3)])
def test_position_ids_must_match_tokens(pos_shape):
    with pytest.raises(ConditionError) as info:
        ConditionStream("s", torch.zeros(1, 4, 8), torch.zeros(pos_shape), "text")
    _one_line(info.value)
    assert "(4, 3)" in str(info.value)


@pytest.mark.parametrize(
    "tokens, position_ids",
    [([[[0.0]]], torch.zeros(1, 3)), (torch.zeros(1, 1, 8), [[0, 0, 0]]), (None, torch.zeros(1, 3))],
)
def test_tokens_and_position_ids_must_be_tensors(tokens, position_ids):
    with pytest.raises(ConditionError) as info:
        ConditionStream("s", tokens, position_ids, "text")
    _one_line(info.value)


def test_cached_but_not_independent_is_refused():
    with pytest.raises(ConditionError, match="independent") as info:
        ref_stream(mode="cached", independent=False)
    _one_line(info.value)
    ref_stream(mode="cached", independent=True)
    ref_stream(mode="concat", independent=True)


@pytest.mark.parametrize("side", ["image", "Text", "", None, "references"])
def test_bad_side(side):
    with pytest.raises(ConditionError) as info:
        ConditionStream("s", torch.zeros(1, 2, 8), text_ids(2), side)
    _one_line(info.value)


@pytest.mark.parametrize("mode", ["cache", "Concat", "", None, "reuse"])
def test_bad_mode(mode):
    with pytest.raises(ConditionError) as info:
        ConditionStream("s", torch.zeros(1, 2, 4), text_ids(2), "reference", mode=mode, independent=True)
    _one_line(info.value)


@pytest.mark.parametrize("name", ["", None, 3, ["a"]])
def test_bad_name(name):
    with pytest.raises(ConditionError):
        ConditionStream(name, torch.zeros(1, 2, 8), text_ids(2))


def test_with_tokens_copies_and_leaves_original():
    s = text_stream(meta={"k": 1})
    new_tokens = torch.ones(1, 3, 8)
    t = s.with_tokens(new_tokens, adapter="x")
    assert t.tokens is new_tokens and t.adapter == "x" and t.position_ids is s.position_ids
    t.meta["k"] = 2
    assert s.meta == {"k": 1} and s.adapter is None and not torch.equal(s.tokens, new_tokens)
    with pytest.raises(ConditionError):
        s.with_tokens(torch.ones(1, 4, 8))  # validation runs on the copy too


# --------------------------------------------------------------------------- ConditionSet


def test_duplicate_names_rejected():
    with pytest.raises(ConditionError, match="'prompt'") as info:
        ConditionSet([text_stream("prompt"), ref_stream("ref"), text_stream("prompt")])
    _one_line(info.value)


def test_access_helpers():
    cs = ConditionSet([text_stream("a"), ref_stream("r"), text_stream("b")])
    assert len(cs) == 3 and [s.name for s in cs] == ["a", "r", "b"]
    assert "r" in cs and "zz" not in cs
    assert [s.name for s in cs.text] == ["a", "b"] and [s.name for s in cs.references] == ["r"]
    assert cs.get("b").name == "b"
    with pytest.raises(ConditionError):
        cs.get("zz")


def test_merge_joins_streams_in_order_and_pools_once():
    pooled = torch.randn(1, 16)
    a = ConditionSet([text_stream("prompt")], pooled=pooled, meta={"subject_tokens": {"prompt": {0: [1]}}, "x": 1})
    b = ConditionSet([ref_stream("ref_0")], meta={"subject_tokens": {"ref_0": {0: []}}, "x": 2, "y": 3})
    c = ConditionSet([ref_stream("ref_1")])
    merged = ConditionSet.merge([a, b, c])
    assert [s.name for s in merged] == ["prompt", "ref_0", "ref_1"]
    assert merged.pooled is pooled
    assert merged.meta == {"subject_tokens": {"prompt": {0: [1]}, "ref_0": {0: []}}, "x": 2, "y": 3}
    # the parts are untouched
    assert a.meta == {"subject_tokens": {"prompt": {0: [1]}}, "x": 1}
    assert b.meta == {"subject_tokens": {"ref_0": {0: []}}, "x": 2, "y": 3}
    assert ConditionSet.merge([]).streams == []


def test_merge_refuses_two_pooled_and_duplicate_names():
    a = ConditionSet([text_stream("p1")], pooled=torch.randn(1, 4))
    b = ConditionSet([text_stream("p2")], pooled=torch.randn(1, 4))
    with pytest.raises(ConditionError) as info:
        ConditionSet.merge([a, b])
    _one_line(info.value)
    with pytest.raises(ConditionError):
        ConditionSet.merge([ConditionSet([text_stream("p")]), ConditionSet([text_stream("p")])])


names_st = st.lists(st.sampled_from(list("abcdefgh")), min_size=1, max_size=6, unique=True)


@given(names=names_st, data=st.data())
@SETTINGS
def test_replace_and_without_keep_order_and_do_not_mutate(names, data):
    original = ConditionSet([text_stream(n) for n in names], meta={"m": {"x": 1}})
    before_streams = list(original.streams)
    before_meta = dict(original.meta)
    target = data.draw(st.sampled_from(names))

    new = text_stream(target, length=2)
    replaced = original.replace(target, new)
    assert [s.name for s in replaced] == names
    assert replaced.get(target) is new
    assert all(replaced.get(n) is original.get(n) for n in names if n != target)
    assert replaced.meta == original.meta and replaced.meta is not original.meta

    dropped = original.without(target)
    assert [s.name for s in dropped] == [n for n in names if n != target]

    added = original.with_streams([text_stream("zz")])
    assert [s.name for s in added] == names + ["zz"]

    assert original.streams == before_streams and original.meta == before_meta
    assert original.get(target) is before_streams[names.index(target)]

    with pytest.raises(ConditionError):
        original.replace("zz", new)
    with pytest.raises(ConditionError):
        original.without("zz")
    other = data.draw(st.sampled_from(names))
    if other != target:
        with pytest.raises(ConditionError):  # renaming onto an existing name
            original.replace(target, text_stream(other))


@given(batch=st.integers(1, 3), times=st.integers(1, 4), with_pooled=st.booleans())
@settings(max_examples=40, deadline=None)
def test_repeat_along_batch(batch, times, with_pooled):
    pooled = torch.randn(batch, 6) if with_pooled else None
    cs = ConditionSet([text_stream("p", 3, batch), ref_stream("r", 4, batch)], pooled=pooled, meta={"k": 1})
    rep = cs.repeat(times)
    if times == 1:
        assert rep is cs
        return
    for old, new in zip(cs, rep):
        assert new.tokens.shape == (batch * times, *old.tokens.shape[1:])
        assert torch.equal(new.tokens, old.tokens.repeat_interleave(times, dim=0))
        # each prompt's copies are adjacent: row i*times + j is prompt i
        for i in range(batch):
            for j in range(times):
                assert torch.equal(new.tokens[i * times + j], old.tokens[i])
        assert torch.equal(new.position_ids, old.position_ids)
        assert (new.name, new.side, new.mode) == (old.name, old.side, old.mode)
        assert old.tokens.shape[0] == batch  # original untouched
    if with_pooled:
        assert torch.equal(rep.pooled, pooled.repeat_interleave(times, dim=0))
    else:
        assert rep.pooled is None
    assert rep.meta == cs.meta


# --------------------------------------------------------------------------- class words -> tokens


def whitespace_tokenize(text: str, specials: bool = True) -> list[tuple[int, int]]:
    """A stand-in for a fast tokenizer's offset mapping: one token per whitespace-separated run,
    plus special tokens with offsets (0, 0) like T5's ``</s>``."""
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return [(0, 0)] + offsets + [(0, 0)] if specials else offsets


def _img() -> Image.Image:
    return Image.new("RGB", (4, 4))


WORDS = ["a", "photo", "of", "on", "the", "beach", "next", "to", "with", "big", "hotdog", "dogs", "mugshot"]
CLASS_WORDS = [None, "dog", "mug", "red mug", "teddy bear", "robot"]


@st.composite
def placeholder_prompts(draw):
    n = draw(st.integers(1, 4))
    class_words = [draw(st.sampled_from(CLASS_WORDS)) for _ in range(n)]
    mentions = list(range(1, n + 1)) + draw(st.lists(st.integers(1, n), max_size=3))
    mentions = draw(st.permutations(mentions))
    parts: list[tuple[str, int | None]] = []  # (text, subject number or None)
    for k in mentions:
        parts.extend((w, None) for w in draw(st.lists(st.sampled_from(WORDS), max_size=3)))
        parts.append((f"<{k}>", k))
        if draw(st.booleans()):
            parts.append((draw(st.sampled_from([",", ".", "!"])), "glue"))  # punctuation glued to the placeholder
    parts.extend((w, None) for w in draw(st.lists(st.sampled_from(WORDS), max_size=3)))
    return class_words, parts


@given(case=placeholder_prompts(), specials=st.booleans())
@SETTINGS
def test_placeholder_class_words_map_to_their_tokens(case, specials):
    class_words, parts = case
    prompt, expected, token = "", {}, 0
    for text, tag in parts:
        if tag == "glue":
            prompt += text
            continue
        prompt += (" " if prompt else "") + text
        if tag is None:
            token += 1
        else:
            word = class_words[tag - 1] or f"subject {tag}"
            n_tokens = len(word.split())
            expected.setdefault(tag - 1, []).extend(range(token, token + n_tokens))
            token += n_tokens
    req = Request(prompt, subjects=[Subject(_img(), w) for w in class_words])
    text = req.text_prompt
    spans = subject_char_spans(req)
    assert set(spans) == set(range(len(class_words)))
    for k, subject_spans in spans.items():
        word = class_words[k] or f"subject {k + 1}"
        assert all(text[s:e] == word for s, e in subject_spans)
    offsets = whitespace_tokenize(text, specials)
    assert len(offsets) == token + (2 if specials else 0)
    shift = 1 if specials else 0
    for k, subject_spans in spans.items():
        assert tokens_in_spans(offsets, subject_spans) == [i + shift for i in expected[k]]


@given(
    words=st.lists(st.sampled_from(WORDS + ["dog", "mug", "robot"]), min_size=1, max_size=10),
    class_words=st.lists(st.sampled_from(["dog", "mug", "robot", None]), min_size=1, max_size=3),
)
@SETTINGS
def test_class_words_without_placeholders_match_first_whole_word(words, class_words):
    prompt = " ".join(words)
    req = Request(prompt, subjects=[Subject(_img(), w) for w in class_words])
    spans = subject_char_spans(req)
    offsets = whitespace_tokenize(req.text_prompt)
    for k, word in enumerate(class_words):
        if word is None or word not in words:  # "hotdog"/"dogs"/"mugshot" must not count
            assert k not in spans
            continue
        assert tokens_in_spans(offsets, spans[k]) == [words.index(word) + 1]


def test_explicit_examples():
    req = Request("<2> sits next to <1>, <2> smiles", subjects=[Subject(_img(), "red mug"), Subject(_img(), None)])
    assert req.text_prompt == "subject 2 sits next to red mug, subject 2 smiles"
    spans = subject_char_spans(req)
    assert spans == {1: [(0, 9), (32, 41)], 0: [(23, 30)]}
    offsets = whitespace_tokenize(req.text_prompt, specials=False)
    assert tokens_in_spans(offsets, spans[0]) == [5, 6]
    assert tokens_in_spans(offsets, spans[1]) == [0, 1, 7, 8]


def test_tokens_in_spans_edges():
    offsets = [(0, 0), (0, 3), (3, 5), (5, 5), (6, 9), (0, 0)]
    assert tokens_in_spans(offsets, [(3, 5)]) == [2]  # touching ends do not overlap
    assert tokens_in_spans(offsets, [(2, 4)]) == [1, 2]  # partial overlaps count
    assert tokens_in_spans(offsets, [(0, 9)]) == [1, 2, 4]  # specials and empty tokens never count
    assert tokens_in_spans(offsets, []) == []
    assert tokens_in_spans([], [(0, 3)]) == []
