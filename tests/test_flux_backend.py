"""The FLUX backend against diffusers' FluxPipeline, and the reference-stream mechanisms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smg_sdk import Subject
from smg_sdk.sampling import CachedReferenceOptions
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.schedules import ConstantSchedule

SIZE = dict(height=64, width=64)


def pipeline(backend, *encoders, schedule=None, rules=()):
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), *encoders], rules=rules, schedule=schedule or ConstantSchedule())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, prompt="a photo of a dog", subjects=None, **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    kwargs.setdefault("output_type", "np")
    return pipe(prompt, subjects, generator=torch.Generator().manual_seed(0), **SIZE, **kwargs)


def reference_run(diffusers_pipe, prompt="a photo of a dog", **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    return diffusers_pipe(
        prompt, generator=torch.Generator().manual_seed(0), output_type="np", max_sequence_length=32,
        guidance_scale=3.5, **SIZE, **kwargs,
    ).images


def test_plain_generation_matches_diffusers(backend, diffusers_pipe):
    ours = run(pipeline(backend)).images
    theirs = reference_run(diffusers_pipe)
    assert ours.shape == theirs.shape == (1, 64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1e-5


def test_true_cfg_matches_diffusers(backend, diffusers_pipe):
    ours = run(pipeline(backend), negative_prompt="blurry", true_cfg_scale=2.0).images
    theirs = reference_run(diffusers_pipe, negative_prompt="blurry", true_cfg_scale=2.0)
    assert np.abs(ours - theirs).max() <= 1e-5
    plain = reference_run(diffusers_pipe)
    assert np.abs(ours - plain).max() > 1e-3  # CFG really did something


def test_num_images_and_callback(backend):
    seen = []

    def callback(pipe, i, t, tensors):
        seen.append((i, tuple(tensors["latents"].shape)))
        return {}

    out = run(pipeline(backend), num_images_per_prompt=2, callback_on_step_end=callback, output_type="pil")
    assert len(out.images) == 2 and out.images[0].size == (64, 64)
    assert [i for i, _ in seen] == [0, 1, 2] and seen[0][1][0] == 2
    assert np.asarray(out.images[0]).tolist() != np.asarray(out.images[1]).tolist()


def test_seed_reproducible(backend):
    pipe = pipeline(backend)
    a = pipe("a cat", seed=3, num_inference_steps=2, output_type="np", **SIZE).images
    b = pipe("a cat", seed=3, num_inference_steps=2, output_type="np", **SIZE).images
    c = pipe("a cat", seed=4, num_inference_steps=2, output_type="np", **SIZE).images
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def latents_of(pipe, subjects, **kwargs):
    return run(pipe, "a photo of <1>", subjects, output_type="latent", **kwargs).images


def test_kv_append_equals_isolated_concat(backend, images):
    """(a) A reference run as its own pass at the step's timestep, K/V appended == concat + isolation."""
    subjects = [Subject(images[0], "dog")]
    concat = latents_of(pipeline(backend, VAEReferenceEncoder(mode="concat")), subjects)
    appended = latents_of(
        pipeline(backend, VAEReferenceEncoder(mode="cached")),
        subjects,
        cached_references=CachedReferenceOptions(timestep="step", recompute_every_step=True),
    )
    plain = run(pipeline(backend), "a photo of dog", output_type="latent").images
    assert (concat - appended).abs().max() <= 1e-4
    assert (concat - plain).abs().max() > 1e-3  # the reference does change the result


def test_cached_once_equals_recomputed_each_step(backend, images):
    """(b) The t = 0 pass computed once == the same pass recomputed at every step."""
    from smg_sdk.types import Request

    pipe = pipeline(backend, VAEReferenceEncoder(mode="cached"))
    request = pipe.make_request("a photo of <1> and <2>", [Subject(images[0], "dog"), Subject(images[1], "cat")],
                                **SIZE, num_inference_steps=3)
    conditions = pipe.encode(request)
    results = {}
    for recompute in (False, True):
        results[recompute] = backend.denoise(
            conditions, height=64, width=64, num_inference_steps=3, generator=torch.Generator().manual_seed(0),
            progress=False, cached=CachedReferenceOptions(timestep="zero", recompute_every_step=recompute),
        )
    assert results[False].reference_passes == 2 and results[True].reference_passes == 6
    assert torch.equal(results[False].latents, results[True].latents)
    assert isinstance(request, Request)


@pytest.mark.parametrize("mode", ["concat", "cached"])
def test_zero_weight_stream_is_absent(backend, images, mode):
    """A stream weighted 0 at every step leaves the image exactly as without it."""
    subjects = [Subject(images[0], "dog")]
    off = latents_of(pipeline(backend, VAEReferenceEncoder(mode=mode), schedule=ConstantSchedule({"ref1": 0.0})), subjects)
    absent = run(pipeline(backend), "a photo of dog", output_type="latent").images
    assert (off - absent).abs().max() <= 1e-5


def test_trace_records_stream_weights(backend, images):
    pipe = pipeline(backend, VAEReferenceEncoder(), schedule=ConstantSchedule({"ref1": 0.5}))
    out = run(pipe, "a photo of <1>", [Subject(images[0], "dog")])
    assert out.trace == [{"prompt": 1.0, "ref1": 0.5}] * 3


def test_from_pipeline_shares_modules(tiny_path):
    from diffusers import FluxPipeline

    from smg_sdk.backends.flux import FluxBackend

    pipe = FluxPipeline.from_pretrained(str(tiny_path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a dog", generator=torch.Generator().manual_seed(0), output_type="np", max_sequence_length=32,
                    num_inference_steps=2, **SIZE).images
    backend = FluxBackend.from_pipeline(pipe, max_sequence_length=32)
    assert backend.transformer is pipe.transformer
    ours = pipeline(backend)("a dog", generator=torch.Generator().manual_seed(0), output_type="np",
                             num_inference_steps=2, **SIZE).images
    assert np.abs(ours - expected).max() <= 1e-5
    # diffusers' own pipeline still runs (and gives the same image) with the SDK's processors installed
    again = pipe("a dog", generator=torch.Generator().manual_seed(0), output_type="np", max_sequence_length=32,
                 num_inference_steps=2, **SIZE).images
    assert np.abs(again - expected).max() <= 1e-6


def test_missing_model_folder_is_clear(tmp_path):
    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="model_index.json"):
        FluxBackend.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="No FLUX model folder"):
        FluxBackend.from_pretrained(tmp_path / "nope")


def test_raw_stream_left_unaggregated_is_refused(backend):
    from smg_sdk.conditions import ConditionStream
    from smg_sdk.errors import BackendError
    from smg_sdk.interfaces import ConditionEncoder

    class RawOnly(ConditionEncoder):
        def encode(self, request, backend):
            from smg_sdk.conditions import ConditionSet

            return ConditionSet([ConditionStream("mllm", torch.zeros(1, 3, 5, 8), torch.zeros(5, 3), side="raw")])

    with pytest.raises(BackendError, match="aggregator"):
        run(pipeline(backend, RawOnly()))


def test_pooled_only_matches_full_encoding(backend):
    from smg_sdk.types import Request

    request = Request("a red teapot", height=64, width=64)
    full = FluxTextEncoder().encode(request, backend)
    pooled_only = FluxTextEncoder(t5=False).encode(request, backend)
    assert len(pooled_only) == 0 and torch.equal(full.pooled, pooled_only.pooled)


def test_processor_follows_diffusers():
    """The processor's body copies diffusers' FluxAttnProcessor and imports its private QKV helper.

    When a diffusers release moves or changes ``_get_qkv_projections``, this fails naming the
    installed version and the version the body follows, so the copy gets re-checked.
    """
    import inspect

    import diffusers
    from diffusers.models.transformers import transformer_flux

    from smg_sdk.backends.flux.processor import FOLLOWS_DIFFUSERS

    where = (f"smg_sdk/backends/flux/processor.py copies FluxAttnProcessor of diffusers {FOLLOWS_DIFFUSERS}; "
             f"the installed diffusers is {diffusers.__version__}")
    helper = getattr(transformer_flux, "_get_qkv_projections", None)
    assert helper is not None, f"{where}, which has no _get_qkv_projections: re-copy the processor body."
    params = list(inspect.signature(helper).parameters)
    assert params[:3] == ["attn", "hidden_states", "encoder_hidden_states"], (
        f"{where}, whose _get_qkv_projections takes {params}: re-check the processor body."
    )
    source = inspect.getsource(transformer_flux.FluxAttnProcessor.__call__)
    for call in ("_get_qkv_projections(", "apply_rotary_emb(", "dispatch_attention_fn("):
        assert call in source, f"{where}, whose FluxAttnProcessor no longer calls {call[:-1]}: re-copy the body."
