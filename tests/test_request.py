"""Request and Subject validation: what constructs, what is refused, and how it is refused.

Every refusal must be an :class:`SMGError` subclass with a one-line, non-empty message, so a
caller can catch one type and show one line.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from smg_sdk.errors import RequestError, SMGError
from smg_sdk.types import Request, Subject, placeholders_in

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _img(color: tuple[int, int, int] = (10, 20, 30), size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def _subjects(n: int, words: list[str | None] | None = None) -> list[Subject]:
    words = words or ["dog", "backpack", "mug", "robot", "cat"]
    return [Subject(_img((k * 40, 0, 0)), words[k % len(words)]) for k in range(n)]


def _assert_clean_error(fn) -> SMGError:
    """Run ``fn``; it must raise an SMGError (nothing else) with a one-line message."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the point is to see *which* exception escapes
        assert isinstance(err, SMGError), f"{type(err).__name__} escaped instead of an SMGError: {err}"
        message = str(err)
        assert message.strip(), f"{type(err).__name__} has an empty message"
        assert "\n" not in message, f"message is not one line: {message!r}"
        return err
    raise AssertionError("expected an SMGError, nothing was raised")


# --------------------------------------------------------------------------- valid requests


def test_minimal_request_defaults():
    req = Request("a photo of a dog")
    assert req.subjects == []
    assert (req.height, req.width, req.num_inference_steps) == (512, 512, 28)
    assert req.text_prompt == "a photo of a dog"
    assert req.make_generator() is None


def test_subject_indices_are_assigned_in_order():
    subs = _subjects(3)
    req = Request("<1>, <2> and <3>", subjects=subs)
    assert [s.index for s in req.subjects] == [0, 1, 2]


def test_subjects_tuple_becomes_list():
    req = Request("<1> on a beach", subjects=tuple(_subjects(1)))
    assert isinstance(req.subjects, list)


def test_prompt_without_placeholders_is_allowed_with_subjects():
    req = Request("a dog and a backpack on the beach", subjects=_subjects(2))
    assert req.text_prompt == "a dog and a backpack on the beach"


def test_placeholders_may_repeat_and_come_in_any_order():
    req = Request("<2> next to <1>, <2> is bigger", subjects=_subjects(2))
    assert req.text_prompt == "backpack next to dog, backpack is bigger"


def test_text_prompt_substitutes_class_words_and_subject_k_when_none():
    subs = [Subject(_img(), "dog"), Subject(_img(), None), Subject(_img(), "mug")]
    req = Request("a photo of <1> next to <2> and <3>", subjects=subs)
    assert req.text_prompt == "a photo of dog next to subject 2 and mug"


def test_seed_and_generator_paths():
    a = Request("x", seed=7).make_generator()
    b = torch.Generator().manual_seed(7)
    assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))
    g = torch.Generator().manual_seed(3)
    assert Request("x", generator=g).make_generator() is g


def test_placeholders_in_order():
    assert placeholders_in("<2> and <1> then <2>") == [2, 1, 2]
    assert placeholders_in("no placeholders < 1 >") == []


# --------------------------------------------------------------------------- placeholder rules


@pytest.mark.parametrize(
    "prompt, n",
    [
        ("<1> and <2>", 1),  # names a subject that does not exist
        ("<1>", 0),  # placeholders but no subjects
        ("<1> only", 2),  # subject 2 never named
        ("<0> and <1>", 1),  # 0 is not a subject number
        ("<2> and <3>", 3),  # subject 1 never named
    ],
)
def test_wrong_placeholder_sets_are_refused(prompt, n):
    err = _assert_clean_error(lambda: Request(prompt, subjects=_subjects(n)))
    assert isinstance(err, RequestError)


@given(n=st.integers(0, 4), named=st.sets(st.integers(0, 6), min_size=1, max_size=6))
@SETTINGS
def test_placeholders_must_name_exactly_one_to_n(n, named):
    prompt = " and ".join(f"<{k}>" for k in sorted(named))
    if named == set(range(1, n + 1)):
        req = Request(prompt, subjects=_subjects(n))
        assert "<" not in req.text_prompt
    else:
        _assert_clean_error(lambda: Request(prompt, subjects=_subjects(n)))


# --------------------------------------------------------------------------- bad requests, property

_BAD_SIZES = st.one_of(
    st.integers(-4096, 0),
    st.integers(1, 4096).filter(lambda v: v % 16),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
    st.just(512.0),
)
_BAD_STEPS = st.one_of(
    st.integers(-100, 0), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3), st.none(), st.just(28.0)
)
_BAD_GUIDANCE = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.integers(max_value=-1),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
_NOT_SUBJECTS = st.one_of(
    st.integers(), st.text(max_size=3), st.none(), st.just(_img()), st.just(torch.zeros(3, 4, 4))
)


@st.composite
def bad_requests(draw):
    """A valid request's keyword arguments with exactly one thing broken."""
    n = draw(st.integers(0, 3))
    kwargs = dict(
        prompt=" and ".join(f"<{k}>" for k in range(1, n + 1)) or "a photo",
        subjects=_subjects(n),
        height=512,
        width=512,
        num_inference_steps=4,
        guidance_scale=3.5,
    )
    what = draw(
        st.sampled_from(
            [
                "height",
                "width",
                "num_inference_steps",
                "num_images_per_prompt",
                "guidance_scale",
                "true_cfg_scale",
                "placeholders",
                "subject_type",
                "subjects_container",
                "seed_and_generator",
                "seed_type",
                "generator_type",
                "prompt",
                "negative_prompt",
                "size_multiple",
            ]
        )
    )
    if what in ("height", "width"):
        kwargs[what] = draw(_BAD_SIZES)
    elif what in ("num_inference_steps", "num_images_per_prompt"):
        kwargs[what] = draw(_BAD_STEPS)
    elif what in ("guidance_scale", "true_cfg_scale"):
        kwargs[what] = draw(_BAD_GUIDANCE)
    elif what == "placeholders":
        named = draw(st.sets(st.integers(0, 6), min_size=1, max_size=5).filter(lambda s: s != set(range(1, n + 1))))
        kwargs["prompt"] = " next to ".join(f"<{k}>" for k in sorted(named))
    elif what == "subject_type":
        subjects = list(kwargs["subjects"]) + [draw(_NOT_SUBJECTS)]
        kwargs["subjects"] = subjects
        kwargs["prompt"] = "a photo"
    elif what == "subjects_container":
        kwargs["subjects"] = draw(st.one_of(st.none(), st.integers(), st.just(_subjects(1)[0])))
        kwargs["prompt"] = "a photo"
    elif what == "seed_and_generator":
        kwargs["seed"] = draw(st.integers(0, 2**31))
        kwargs["generator"] = torch.Generator().manual_seed(0)
    elif what == "seed_type":
        kwargs["seed"] = draw(
            st.one_of(
                st.floats(), st.text(max_size=3), st.booleans(), st.just(2**64), st.integers(min_value=2**64)
            )
        )
    elif what == "generator_type":
        kwargs["generator"] = draw(st.one_of(st.integers(), st.text(max_size=3), st.just(torch.zeros(1))))
    elif what == "prompt":
        kwargs["prompt"] = draw(st.one_of(st.just(""), st.just("   \n"), st.none(), st.integers(), st.just(b"dog")))
        kwargs["subjects"] = []
    elif what == "negative_prompt":
        kwargs["negative_prompt"] = draw(st.one_of(st.integers(), st.just(["no"]), st.just(1.5)))
    elif what == "size_multiple":
        kwargs["size_multiple"] = draw(st.one_of(st.integers(-64, 0), st.booleans(), st.floats(), st.text(max_size=2)))
    return kwargs


@given(kwargs=bad_requests())
@SETTINGS
def test_bad_requests_raise_only_smg_errors_with_one_line_messages(kwargs):
    _assert_clean_error(lambda: Request(**kwargs))


@pytest.mark.parametrize(
    "changes",
    [
        {"height": 500},
        {"width": 0},
        {"height": -16},
        {"width": True},
        {"height": 512.0},
        {"width": "512"},
        {"num_inference_steps": 0},
        {"guidance_scale": float("nan")},
        {"guidance_scale": -1.0},
        {"seed": 1, "generator": torch.Generator()},
    ],
)
def test_examples_of_bad_requests(changes):
    err = _assert_clean_error(lambda: Request("a photo", **changes))
    assert isinstance(err, RequestError)


def test_size_error_suggests_neighbouring_multiples():
    err = _assert_clean_error(lambda: Request("a photo", height=500))
    assert "496" in str(err) and "512" in str(err)


# --------------------------------------------------------------------------- valid requests, property


@st.composite
def valid_requests(draw):
    n = draw(st.integers(0, 4))
    words = [draw(st.one_of(st.none(), st.sampled_from(["dog", "cat", "red mug", "robot"]))) for _ in range(n)]
    subjects = [Subject(_img(), w) for w in words]
    use_placeholders = n > 0 and draw(st.booleans())
    if use_placeholders:
        order = draw(st.permutations(list(range(1, n + 1))))
        extra = draw(st.lists(st.integers(1, n), max_size=3))
        prompt = "a photo of " + " with ".join(f"<{k}>" for k in list(order) + extra)
    else:
        prompt = draw(st.text(alphabet="abc xyz,.", min_size=1, max_size=20).filter(lambda s: s.strip()))
    kwargs = dict(
        prompt=prompt,
        subjects=subjects,
        height=16 * draw(st.integers(1, 128)),
        width=16 * draw(st.integers(1, 128)),
        num_inference_steps=draw(st.integers(1, 200)),
        guidance_scale=draw(st.one_of(st.integers(0, 30), st.floats(0, 30, allow_nan=False))),
        true_cfg_scale=draw(st.floats(0, 10, allow_nan=False)),
        num_images_per_prompt=draw(st.integers(1, 8)),
        negative_prompt=draw(st.one_of(st.none(), st.text(max_size=10))),
    )
    source = draw(st.sampled_from(["none", "seed", "generator"]))
    if source == "seed":
        kwargs["seed"] = draw(st.integers(0, 2**63 - 1))
    elif source == "generator":
        kwargs["generator"] = torch.Generator().manual_seed(draw(st.integers(0, 1000)))
    return kwargs


@given(kwargs=valid_requests())
@SETTINGS
def test_valid_requests_never_raise(kwargs):
    req = Request(**kwargs)
    text = req.text_prompt
    assert placeholders_in(text) == [] or not placeholders_in(req.prompt)
    for k, subject in enumerate(req.subjects):
        assert subject.index == k
        if placeholders_in(req.prompt):
            assert (subject.class_word or f"subject {k + 1}") in text
    req.make_generator()


# --------------------------------------------------------------------------- Subject


def test_subject_accepts_pil_and_tensor():
    assert Subject(_img(), "dog").pil().size == (8, 8)
    t = torch.rand(3, 5, 7)
    assert Subject(t).pil().size == (7, 5)


def test_subject_pil_converts_to_rgb():
    gray = Image.new("L", (4, 4), 128)
    assert Subject(gray).pil().mode == "RGB"


@pytest.mark.parametrize(
    "image",
    [
        torch.zeros(4, 4),
        torch.zeros(1, 3, 4, 4),
        torch.zeros(4, 8, 8),
        torch.zeros(8, 8, 3),
        torch.zeros(3),
        "image.png",
        None,
        [[0.0]],
        42,
    ],
    ids=["2d", "4d", "4ch", "hwc", "1d", "str", "none", "list", "int"],
)
def test_subject_rejects_other_shapes_and_types(image):
    err = _assert_clean_error(lambda: Subject(image, "dog"))
    assert isinstance(err, RequestError)


@pytest.mark.parametrize("word", ["", "   ", 3, b"dog"])
def test_subject_rejects_bad_class_words(word):
    err = _assert_clean_error(lambda: Subject(_img(), word))
    assert isinstance(err, RequestError)


@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=60, deadline=None)
def test_subject_tensor_pil_round_trip_within_one_step(h, w, seed):
    t = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))
    pil = Subject(t).pil()
    assert pil.size == (w, h) and pil.mode == "RGB"
    back = torch.tensor(list(pil.getdata()), dtype=torch.float32).reshape(h, w, 3).permute(2, 0, 1) / 255
    assert float((back - t).abs().max()) <= 1 / 255 + 1e-6


def test_subject_refuses_out_of_range_floats():
    """Issue 13: float values outside [0, 1] are refused, not clamped (0..255 floats would become all white)."""
    t = torch.tensor([[[-1.0, 2.0]], [[0.0, 1.0]], [[0.5, 0.5]]])
    err = _assert_clean_error(lambda: Subject(t))
    assert isinstance(err, RequestError) and "[0, 1]" in str(err)
