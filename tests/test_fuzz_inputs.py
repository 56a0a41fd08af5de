"""The kept fuzz suite of issue 13: bad input to Subject, Request, pipe(...) and the CLI raises only SMGError.

Every example either succeeds or raises an :class:`~smg_sdk.SMGError` with a one-line message
(the CLI: exit 2, one ``error:`` line, no traceback). Example counts (``EXAMPLES``) add up to
2,200; the whole module runs in a couple of minutes on one core.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from smg_sdk import PipelineOutput, Request, SMGError, Subject

EXAMPLES = {"subject": 1000, "request": 900, "pipe": 200, "cli": 100}
SUBJECT_FIELDS = dict(max_examples=EXAMPLES["subject"])

TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "<1>", "<0>", "<2> <1>", "\ud800", "a \udfff b"]))
ODD = st.sampled_from([None, "7", b"x", 1.5, float("nan"), float("inf"), -1, 0, True, [], {}, object()])


def one_line_smg_error(fn):
    """Run ``fn``; it may succeed, or raise SMGError with a one-line message. Returns its result or None."""
    try:
        return fn()
    except SMGError as err:
        assert str(err).strip() and "\n" not in str(err), repr(str(err))
        return None


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64, np.bool_, np.complex64]))
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    fill = draw(st.sampled_from(["rand", "zeros", "nan", "big", "neg"]))
    values = {"rand": np.random.default_rng(draw(st.integers(0, 99))).random(shape), "zeros": np.zeros(shape),
              "nan": np.full(shape, np.nan), "big": np.full(shape, 300.0), "neg": np.full(shape, -0.5)}[fill]
    with np.errstate(invalid="ignore"):
        return values.astype(dtype) if dtype not in (np.uint8, np.uint16, np.int64, np.bool_) or fill != "nan" \
            else np.zeros(shape, dtype=dtype)


@st.composite
def images(draw):
    kind = draw(st.sampled_from(["array", "tensor", "pil", "path", "odd"]))
    if kind == "array":
        return draw(arrays())
    if kind == "tensor":
        array = draw(arrays())
        tensor = torch.from_numpy(np.ascontiguousarray(array)) if array.dtype != np.uint16 else torch.zeros(3, 2, 2)
        if array.ndim == 3 and draw(st.booleans()):
            tensor = tensor.permute(2, 0, 1)
        extra = draw(st.sampled_from(["", "", "sparse", "meta", "grad"]))
        if extra == "sparse" and tensor.ndim:
            return tensor.to_sparse()
        if extra == "meta":
            return tensor.to("meta")
        if extra == "grad" and tensor.is_floating_point():
            return tensor.clone().requires_grad_(True)
        return tensor
    if kind == "pil":
        mode = draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "La", "P", "PA", "I", "I;16", "F", "1", "CMYK",
                                     "YCbCr", "LAB", "HSV", "RGBa"]))
        size = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
        return Image.new(mode, size)
    if kind == "path":
        return draw(st.sampled_from(["", ".", "/", "/nonexistent.png", "/etc/hostname", "/dev/null", "x.png"]))
    return draw(ODD)


@given(image=images(), word=st.one_of(st.none(), TEXT, ODD))
@settings(max_examples=EXAMPLES["subject"])
def test_fuzz_subject(image, word):
    subject = one_line_smg_error(lambda: Subject(image, word))
    if subject is not None:
        pil = subject.pil()
        assert pil.mode == "RGB" and min(pil.size) >= 1


def numbers(good):
    return st.one_of(good, ODD, st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     st.builds(np.int64, st.integers(-1000, 1000)), st.builds(np.float32, st.floats(-10, 10)))


REQUEST_FIELDS = dict(
    height=numbers(st.sampled_from([16, 32])), width=numbers(st.sampled_from([16, 32])),
    num_inference_steps=numbers(st.just(1)), guidance_scale=numbers(st.floats(0, 10)),
    num_images_per_prompt=numbers(st.integers(1, 2)), true_cfg_scale=numbers(st.floats(0, 3)),
    seed=st.one_of(st.none(), numbers(st.integers(0, 10))), negative_prompt=st.one_of(st.none(), TEXT, ODD),
    size_multiple=numbers(st.just(16)),
)


@st.composite
def request_kwargs(draw, fields=REQUEST_FIELDS):
    keys = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    kwargs = {key: draw(fields[key]) for key in keys}
    n = draw(st.integers(0, 3))
    subjects = [Subject(Image.new("RGB", (4, 4)), draw(st.sampled_from([None, "dog"]))) for _ in range(n)]
    kwargs["subjects"] = draw(st.sampled_from([subjects, tuple(subjects), "dog", 3, None, [1], subjects[:1]]))
    if draw(st.booleans()) and kwargs.get("seed") is not None:
        kwargs["generator"] = draw(st.sampled_from([torch.Generator(), "gen", 5]))
    return kwargs


@given(prompt=st.one_of(TEXT, ODD), kwargs=request_kwargs())
@settings(max_examples=EXAMPLES["request"])
def test_fuzz_request(prompt, kwargs):
    if kwargs.get("subjects") is None:
        kwargs.pop("subjects")
    request = one_line_smg_error(lambda: Request(prompt, **kwargs))
    if request is not None:
        assert request.text_prompt is not None and math.isfinite(request.guidance_scale)


@pytest.fixture(scope="module")
def tiny():
    from smg_sdk import SubjectPipeline

    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


CALL_FIELDS = {
    **{k: v for k, v in REQUEST_FIELDS.items() if k != "size_multiple"},
    "num_candidates": numbers(st.integers(1, 2)),
    "output_type": st.sampled_from(["pil", "np", "pt", "latent", "PIL", None, 3]),
    "latents": st.sampled_from([torch.zeros(1, 1, 64), torch.full((1, 4, 64), float("nan")), "x",
                                torch.zeros(1, 4, 64, dtype=torch.int64), torch.zeros(1, 1, 64).to_sparse()]),
    "callback_on_step_end": st.sampled_from([3, "f", lambda *a: 5, lambda *a: None, lambda *a: {"latents": 2}]),
    "cached_references": st.sampled_from(["zero", 1, None]),
    "candidate_batch_size": numbers(st.integers(1, 2)),
}


@given(prompt=st.one_of(TEXT, ODD), kwargs=request_kwargs(CALL_FIELDS))
@settings(max_examples=EXAMPLES["pipe"])
def test_fuzz_pipe_call(tiny, prompt, kwargs):
    kwargs.setdefault("height", 16)
    kwargs.setdefault("width", 16)
    kwargs.setdefault("num_inference_steps", 1)
    subjects = kwargs.pop("subjects")
    out = one_line_smg_error(lambda: tiny(prompt, subjects, **kwargs))
    assert out is None or isinstance(out, PipelineOutput)


CLI_VALUES = {
    "--height": st.sampled_from(["16", "17", "-16", "x", "99999999", "0"]),
    "--width": st.sampled_from(["16", "32", "1e3", "", "16000000"]),
    "--steps": st.sampled_from(["1", "0", "-1", "1000000000", "a"]),
    "--candidates": st.sampled_from(["1", "0", "-3", "1000000"]),
    "--guidance": st.sampled_from(["3.5", "nan", "inf", "1e300", "-1"]),
    "--seed": st.sampled_from(["0", "-1", "99999999999999999999999", "s"]),
    "--option": st.sampled_from(["reference_mode=cached", "nope", "=", "referense_mode=1", "position=sideways"]),
    "--aggregator": st.sampled_from(["lap", "no-such", "dla"]),
    "--rule": st.sampled_from(["no-such-rule", "isolate-references"]),
    "--preset": st.sampled_from(["tiny", "no-such-preset"]),
    "--verifier": st.sampled_from(["no-such-verifier"]),
}


@given(data=st.data())
@settings(max_examples=EXAMPLES["cli"])
def test_fuzz_cli(data):
    """The CLI in-process (as `smg` runs it): exit 0, or exit 2 with one error line and no traceback."""
    from smg_sdk.cli import main

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        Image.new("RGB", (8, 8), "red").save(root / "dog.png")
        (root / "dir.png").mkdir()
        subject = data.draw(st.sampled_from(["dog.png:dog", "dog.png", "missing.png", "dir.png", ":", "dog.png:"]))
        out = data.draw(st.sampled_from(["o.png", "o.txt", "dir.png", "dog.png/o.png", "new/o.png"]))
        prompt = data.draw(st.sampled_from(["<1> on sand", "", "<2>", "a cat", "\u00e9<1>"]))
        argv = ["generate", "--prompt", prompt, "--subject", str(root / subject), "--out", str(root / out),
                "--quiet", "--steps", "1", "--height", "16", "--width", "16"]
        for flag in data.draw(st.lists(st.sampled_from(sorted(CLI_VALUES)), unique=True, min_size=1, max_size=3)):
            argv += [flag, data.draw(CLI_VALUES[flag])]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code
    assert code in (0, 2), (code, argv, stderr.getvalue())
    if code == 2:
        lines = stderr.getvalue().strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in stderr.getvalue(), lines
