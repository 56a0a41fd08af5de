"""Compact references (OminiControl2's position scaling): ``vae-reference``'s ``reference_scale``."""

from __future__ import annotations

import pytest
import torch

from smg_sdk import Subject
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.backends.flux.positions import grid_ids, reference_ids
from smg_sdk.errors import ConditionError, SMGError
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.plugins.manager import get_registry
from tests.conftest import make_image


def _ids(rows: list[tuple[int, int, int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# --------------------------------------------------------------------------- position ids


def test_kontext_ids_of_a_half_scale_reference_span_the_target_grid():
    (ids,) = reference_ids("kontext", (4, 4), [(2, 2)], step=2)
    assert torch.equal(ids, _ids([(1, 0, 0), (1, 0, 2), (1, 2, 0), (1, 2, 2)]))  # the module docstring's example


def test_omini_ids_are_scaled_then_shifted_left():
    (ids,) = reference_ids("omini", (4, 4), [(1, 2)], step=4)
    assert torch.equal(ids, _ids([(0, 0, -4), (0, 0, 0)]))


def test_uno_references_continue_the_diagonal_in_target_units():
    first, second = reference_ids("uno", (4, 4), [(2, 2), (1, 1)], step=2)
    assert torch.equal(first, _ids([(0, 4, 4), (0, 4, 6), (0, 6, 4), (0, 6, 6)]))
    assert torch.equal(second, _ids([(0, 8, 8)]))  # after 4 + 2 * 2 rows and columns


def test_step_one_is_the_unscaled_grid():
    (ids,) = reference_ids("kontext", (3, 3), [(3, 3)], step=1)
    assert torch.equal(ids[:, 1:], grid_ids(3, 3)[:, 1:])


@pytest.mark.parametrize("step", [0, -1, 1.5, True])
def test_bad_step_is_refused(step):
    with pytest.raises(ConditionError, match="positive integer"):
        reference_ids("kontext", (2, 2), [(1, 1)], step=step)


# --------------------------------------------------------------------------- the encoder option


@pytest.mark.parametrize("value", [0, 0.3, 2, -0.5, float("nan"), True, "half"])
def test_bad_reference_scale_is_refused_by_name(value):
    with pytest.raises(SMGError, match=r"reference_scale must be 1/n for a whole n"):
        get_registry().build("encoder", "vae-reference", reference_scale=value)


def test_reference_scale_is_recorded_in_the_config():
    encoder = get_registry().build("encoder", "vae-reference", mode="cached", reference_scale=0.25)
    assert encoder.smg_config == {"mode": "cached", "reference_scale": 0.25}
    assert encoder.reduction == 4


def _request(pipe, size: int = 64, subjects: int = 1):
    return pipe.make_request("a <1> here", [Subject(make_image(k, 96), "cat") for k in range(subjects)],
                             height=size, width=size, num_inference_steps=2, seed=0)


@pytest.mark.parametrize("scale, tokens, step", [(1.0, 16, 1), (0.5, 4, 2), (0.25, 1, 4)])
def test_token_count_and_positions_at_each_scale(backend, scale, tokens, step):
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(reference_scale=scale)])
    (ref,) = [s for s in pipe.encode(_request(pipe)).streams if s.side == "reference"]
    assert ref.tokens.shape[1] == tokens  # 64 px target: 4 x 4 tokens; 1/2 -> 2 x 2; 1/4 -> 1 x 1
    side = 4 // step
    assert torch.equal(ref.position_ids, grid_ids(side, side, axis0=1, step=step))
    assert float(ref.position_ids[:, 1].max()) == (side - 1) * step


def test_compact_tokens_are_the_reference_encoded_at_the_reduced_box(backend):
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(reference_scale=0.5)])
    request = _request(pipe)
    (ref,) = [s for s in pipe.encode(request).streams if s.side == "reference"]
    (expected,) = backend.encode_references([request.subjects[0].pil()], 32, 32)
    assert torch.equal(ref.tokens, expected.tokens)


def test_box_that_is_not_whole_tokens_at_the_scale_is_refused(backend):
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(reference_scale=0.5)])
    with pytest.raises(ConditionError, match=r"reference_scale=1/2 makes the 48x48 reference box 24x24 px"):
        pipe.encode(_request(pipe, size=48))


@pytest.mark.parametrize("mode", ["concat", "cached"])
def test_generation_runs_with_compact_references_in_both_modes(backend, mode):
    outputs = {}
    for scale in (1.0, 0.5):
        pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode=mode, reference_scale=scale)])
        pipe.set_progress_bar_config(disable=True)
        subjects = [Subject(make_image(k, 96), "cat") for k in range(2)]
        out = pipe("<1> and <2>", subjects, height=64, width=64, num_inference_steps=2, seed=0, output_type="latent")
        outputs[scale] = out.images
    assert outputs[0.5].shape == outputs[1.0].shape and torch.isfinite(outputs[0.5]).all()
    assert not torch.allclose(outputs[0.5], outputs[1.0])  # the references reached the target, at their scale


def test_tiny_preset_takes_reference_scale():
    pipe = SubjectPipeline.from_preset("tiny", reference_mode="cached", reference_scale=0.5)
    assert pipe.encoders[1].reduction == 2 and pipe.encoders[1].smg_config["reference_scale"] == 0.5
