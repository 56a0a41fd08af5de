"""Issue 13: reference images as users send them, and every pipe(...) argument checked up front.

Each test named after a bullet of the issue failed on the code before the fix.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from smg_sdk import RequestError, SMGError, Subject
from smg_sdk.images import fit_reference, load_image

GREY_16 = round(0.46 * 65535)  # a 46 % grey, 16-bit
GREY_8 = round(0.46 * 255)


def clean_error(fn) -> SMGError:
    """``fn`` must raise an SMGError with a one-line message (nothing else)."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - which exception escapes is the point
        assert isinstance(err, SMGError), f"{type(err).__name__} escaped: {err}"
        assert str(err).strip() and "\n" not in str(err)
        return err
    raise AssertionError("expected an SMGError")


@pytest.fixture(scope="module")
def pipe():
    from smg_sdk import SubjectPipeline

    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def grey16_png(path: Path) -> Path:
    Image.fromarray(np.full((8, 8), GREY_16, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    return path


# ----------------------------------------------------------------------------- reference images


def test_16bit_reference_keeps_its_grey_through_api_and_cli(tmp_path):
    from smg_sdk.cli import _parse_subject

    path = grey16_png(tmp_path / "grey16.png")
    for subject in (Subject(Image.open(path)), _parse_subject(f"{path}:ball")):
        values = np.asarray(subject.pil())
        assert abs(int(values.mean()) - GREY_8) <= 1, values.mean()


def test_integer_tensors_are_read_by_dtype_and_0_255_floats_refused():
    grey = torch.full((3, 4, 4), 128, dtype=torch.uint8)
    assert np.asarray(Subject(grey).pil()).max() == 128
    err = clean_error(lambda: Subject(grey.float()))
    assert isinstance(err, RequestError) and "divide by 255" in str(err)
    clean_error(lambda: Subject(grey.long()))


def test_exif_orientation_is_applied_by_the_cli(tmp_path):
    from smg_sdk.cli import _parse_subject

    image = Image.new("RGB", (30, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert _parse_subject(str(tmp_path / "phone.jpg")).pil().size == (10, 30)


def ball_photo(width: int = 32, height: int = 96) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).ellipse((2, height // 2 - 14, 30, height // 2 + 14), fill=(255, 0, 0))
    return image


def red_box(image: Image.Image) -> tuple[int, int]:
    red = np.asarray(image).astype(int)
    mask = (red[..., 0] > 200) & (red[..., 1] < 80)
    rows, cols = np.nonzero(mask)
    return cols.max() - cols.min() + 1, rows.max() - rows.min() + 1


def test_non_square_reference_keeps_a_round_subject_round(pipe):
    fitted = fit_reference(ball_photo(), 128, 128, 16)
    w, h = red_box(fitted)
    assert abs(w / h - 1) < 0.1, (w, h)
    assert fitted.size == (48, 128)  # 43 x 128 of picture, padded to whole 16 px tokens
    from smg_sdk.backends.flux.encoders import VAEReferenceEncoder
    from smg_sdk.types import Request

    request = Request("<1> on sand", [Subject(ball_photo(), "ball")], height=128, width=128)
    stream = VAEReferenceEncoder().encode(request, pipe.backend).streams[0]
    assert stream.tokens.shape[1] == 8 * 3 and stream.position_ids.shape[0] == 24
    square = Request("<1> on sand", [Subject(Image.new("RGB", (40, 40)), "ball")], height=128, width=128)
    assert VAEReferenceEncoder().encode(square, pipe.backend).streams[0].tokens.shape[1] == 64


def closed_image(tmp_path: Path) -> Image.Image:
    Image.new("RGB", (4, 4)).save(tmp_path / "c.png")
    image = Image.open(tmp_path / "c.png")
    image.close()
    return image


def truncated_png(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    return tmp_path / "t.png"


def bomb_png(path: Path, side: int = 50_000) -> Path:
    """A tiny PNG whose header claims ``side x side`` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["empty-pil", "empty-tensor", "nan", "La", "truncated", "closed", "sparse",
                                  "meta", "bomb", "folder", "bool"])
def test_unusable_images_fail_at_subject_construction(tmp_path, case):
    makers = {
        "empty-pil": lambda: Image.new("RGB", (0, 0)),
        "empty-tensor": lambda: torch.zeros(3, 0, 0),
        "nan": lambda: torch.full((3, 4, 4), float("nan")),
        "La": lambda: Image.new("La", (4, 4)),
        "truncated": lambda: str(truncated_png(tmp_path)),
        "closed": lambda: closed_image(tmp_path),
        "sparse": lambda: torch.rand(3, 4, 4).to_sparse(),
        "meta": lambda: torch.zeros(3, 4, 4, device="meta"),
        "bomb": lambda: str(bomb_png(tmp_path / "bomb.png")),
        "folder": lambda: str(tmp_path),
        "bool": lambda: np.ones((4, 4), dtype=bool),
    }
    image = makers[case]()
    if case == "La":  # La (premultiplied alpha) is convertible: it must load, not fail later
        assert Subject(image).pil().mode == "RGB"
        return
    err = clean_error(lambda: Subject(image, "dog"))
    assert isinstance(err, RequestError)
    if case == "folder":
        assert "folder" in str(err)


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(load_image(rgba)).min() == 255


# ----------------------------------------------------------------------------- arguments


def run(pipe, **kwargs):
    call = dict(num_inference_steps=1, height=32, width=32, seed=0)
    call.update(kwargs)
    return pipe(call.pop("prompt", "a dog"), **call)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(latents=torch.zeros(1, 3, 64)),
        dict(latents=torch.full((1, 4, 64), float("nan"))),
        dict(latents=[[0.0]]),
        dict(callback_on_step_end=42),
        dict(callback_on_step_end=lambda *a: 7),
        dict(callback_on_step_end=lambda p, i, t, d: {"latents": torch.zeros(2)}),
        dict(cached_references="zero"),
        dict(prompt="a \ud800 dog"),
        dict(guidance_scale=1e300),
        dict(width=16_000_000),
        dict(num_inference_steps=10**9),
        dict(num_candidates=10**6),
        dict(num_images_per_prompt=10**6),
        dict(subjects=42),
    ],
    ids=["latents-shape", "latents-nan", "latents-type", "callback-type", "callback-return", "callback-latents",
         "cached-type", "surrogate", "guidance-huge", "width-huge", "steps-huge", "candidates-huge", "batch-huge",
         "subjects-int"],
)
def test_pipe_arguments_raise_smg_errors(pipe, kwargs):
    assert isinstance(clean_error(lambda: run(pipe, **kwargs)), RequestError)


def test_class_word_with_lone_surrogate_is_refused():
    clean_error(lambda: Subject(Image.new("RGB", (4, 4)), "d\udc00g"))


def test_single_subject_and_correct_latents_are_accepted(pipe):
    image = Image.new("RGB", (16, 16), "red")
    one = run(pipe, prompt="<1> on grass", subjects=Subject(image, "dog"), output_type="latent").images
    assert one.shape == (1, 4, 64)
    bare = run(pipe, prompt="<1> on grass", subjects=image, output_type="latent").images
    assert bare.shape == (1, 4, 64)
    seen = []
    run(pipe, latents=torch.randn(1, 4, 64, dtype=torch.float64), callback_on_step_end=lambda p, i, t, d: seen.append(i))
    assert seen == [0]


def test_empty_negative_prompt_and_numpy_integers_work(pipe):
    out = run(pipe, negative_prompt="", true_cfg_scale=2.0, height=np.int64(32), num_inference_steps=np.int32(1),
              output_type="latent")
    assert out.images.shape == (1, 4, 64)


def test_messages_point_the_right_way(tmp_path):
    from smg_sdk import SubjectPipeline
    from smg_sdk.types import as_int

    assert as_int(np.int64(3), "height", 1) == 3
    assert "folder" in str(clean_error(lambda: Subject(str(tmp_path))))
    pipe = SubjectPipeline.compose(backend=_tiny_backend(), encoders="flux-text")
    assert len(pipe.encoders) == 1 and type(pipe.encoders[0]).__name__ == "FluxTextEncoder"


def _tiny_backend():
    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.presets.tiny import tiny_flux_path

    return FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=32)


class Brightness:
    """A verifier preferring bright images."""

    def score(self, images, request, plans=None):
        return [float(np.asarray(image).mean()) for image in images]


@pytest.mark.parametrize("output_type", ["np", "pt"])
def test_verifier_ranks_np_and_pt_outputs(pipe, output_type):
    verifier, pipe.verifier = pipe.verifier, Brightness()
    try:
        out = run(pipe, num_images_per_prompt=3, output_type=output_type)
    finally:
        pipe.verifier = verifier
    assert len(out.scores) == 3 and out.scores == sorted(out.scores, reverse=True)
    assert sorted(out.ranking) == [0, 1, 2]
    means = [float(np.asarray(x).mean()) for x in (out.images if output_type == "np" else out.images.numpy())]
    assert means == sorted(means, reverse=True)
