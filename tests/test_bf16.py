"""bfloat16, as every GPU user loads FLUX: position ids, the Squeeze aggregators, the MLLM's placement.

The backend is cast to bf16 on its own (as ``FluxBackend.from_pretrained(path, dtype=torch.bfloat16)``
leaves it) while the components keep the float32 weights they were built or trained with,
then the whole pipeline is cast; both must generate.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import ConditionStream, Request, SubjectPipeline, get_registry, load_mllm, tiny_qwen_vl_path
from smg_sdk.backends.flux.positions import reference_ids

RED = Image.new("RGB", (64, 64), "red")


def test_uno_ids_at_1024px_reach_the_transformer_distinct_in_bf16(backend):
    """4 references at 1024 px under ``uno``: ids 256..319, where bf16 steps by 2."""
    from smg_sdk.attention.passes import build_attention_pass
    from smg_sdk.backends.flux.encoders import FluxTextEncoder
    from smg_sdk.backends.flux.sampler import predict_velocity

    grid = (1024 // 16, 1024 // 16)
    ids = reference_ids("uno", grid, [grid] * 4)[3].reshape(64, 64, 3)[:2, :2].reshape(4, 3)  # 4th reference's corner
    assert ids[:, 1:].min() == 256 and ids[:, 1:].max() == 257
    assert torch.unique(ids.to(torch.bfloat16), dim=0).shape[0] == 1  # in bf16 all four are (0, 256, 256)
    backend.to(dtype=torch.bfloat16)
    text = FluxTextEncoder().encode(Request("a red dog", height=32, width=32), backend)
    reference = ConditionStream("ref", torch.randn(1, 4, backend.transformer.config.in_channels), ids, side="reference")
    seen: list[torch.Tensor] = []
    hook = backend.transformer.pos_embed.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        attention = build_attention_pass(text.with_streams([reference]), 4)
        latents = torch.randn(1, 4, 64, dtype=torch.bfloat16)
        velocity = predict_velocity(backend, attention, latents, torch.tensor([0.5]), height=32, width=32)
    finally:
        hook.remove()
    assert velocity.dtype == torch.bfloat16 and torch.isfinite(velocity.float()).all()
    (joint,) = seen
    assert joint.dtype in (torch.float32, torch.float64)
    assert torch.equal(joint[-4:].float(), ids)  # the reference's ids, last in the joint sequence
    assert torch.unique(joint[-4:], dim=0).shape[0] == 4


@pytest.fixture(scope="module")
def squeeze():
    pipe = SubjectPipeline.from_preset("squeeze-tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", ["dla", "lap", "last-layer", "fixed-layers"])
def test_squeeze_aggregators_follow_a_bf16_backend(squeeze, name):
    encoder = next(e for e in squeeze.encoders if type(e).__name__ == "MLLMConditionEncoder")
    torch.manual_seed(0)
    aggregator = get_registry().build("aggregator", name, num_layers=len(encoder.layers),
                                      in_dim=encoder.mllm.hidden_size, out_dim=squeeze.backend.text_width)
    request = squeeze.make_request("a photo of <1> on a beach", [RED])
    raw = encoder.encode(request, squeeze.backend)
    expected = aggregator.aggregate(raw, request).get("mllm").tokens
    stream = raw.get(encoder.stream)
    bf16 = raw.replace(encoder.stream, dataclasses.replace(stream, tokens=stream.tokens.to(torch.bfloat16)))
    out = aggregator.aggregate(bf16, request).get("mllm").tokens
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), expected, atol=0.05, rtol=0.05)


def _generates_with_bf16_backend_then_all_bf16(pipe: SubjectPipeline) -> None:
    """Backend alone in bf16 (components as built), then the whole pipeline: both give finite images."""
    for place in (pipe.backend.to, pipe.to):
        place(dtype=torch.bfloat16)
        out = pipe("a photo of <1> on a beach", [RED], seed=0, num_inference_steps=2, height=64, width=64,
                   output_type="np")
        assert np.isfinite(out.images).all()


def test_squeeze_pipeline_generates_with_a_bf16_backend_then_all_bf16(squeeze):
    try:
        _generates_with_bf16_backend_then_all_bf16(squeeze)
    finally:
        squeeze.to(dtype=torch.float32)


def test_aligngen_pipeline_generates_with_a_bf16_backend_then_all_bf16():
    pipe = SubjectPipeline.from_preset("aligngen-tiny")
    pipe.set_progress_bar_config(disable=True)
    _generates_with_bf16_backend_then_all_bf16(pipe)


def test_squeeze_mllm_encoder_loads_its_mllm_with_the_dtype_and_device_asked():
    encoder = get_registry().build("encoder", "squeeze-mllm", model=str(tiny_qwen_vl_path()), dtype="bfloat16",
                                   device="cpu")
    assert {p.dtype for p in encoder.mllm.model.parameters()} == {torch.bfloat16}
    assert encoder.mllm.device == torch.device("cpu")


def test_a_preloaded_mllm_is_used_not_loaded_again(tmp_path):
    folder = tmp_path / "qwen"  # a folder no other test has loaded
    shutil.copytree(tiny_qwen_vl_path(), folder)
    preloaded = load_mllm(folder, torch_dtype=torch.bfloat16)  # the older name of dtype= still works
    encoder = get_registry().build("encoder", "squeeze-mllm", model=str(folder))
    assert encoder.mllm is preloaded
    with pytest.raises(Exception, match="dtype"):
        get_registry().build("encoder", "squeeze-mllm", dtype="bfloat17")


def test_music_pipeline_plans_generates_and_verifies_in_bf16():
    """The MLLM planner (short plans: the path, not the plan, is under test), layout rule, CLIP verifier."""
    pipe = SubjectPipeline.from_preset("music-tiny", max_new_tokens=4, max_attempts=1)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(dtype=torch.bfloat16)
    out = pipe("a photo of <1> on a beach", [RED], seed=0, num_inference_steps=2, height=64, width=64,
               output_type="np", num_candidates=1)
    assert np.isfinite(out.images).all() and all(np.isfinite(s) for s in out.scores)
