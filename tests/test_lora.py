"""Per-stream LoRA routing and standard FLUX LoRA files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smg_sdk import Subject
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.backends.flux.lora import token_role
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.schedules import ConstantSchedule

SIZE = dict(height=64, width=64)


def make_pipe(backend, mode, adapter="subject"):
    pipe = SubjectPipeline(
        backend, [FluxTextEncoder(), VAEReferenceEncoder(mode=mode, adapter=adapter)], schedule=ConstantSchedule()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def capture(module, store, key):
    return module.register_forward_hook(lambda m, i, o: store.setdefault(key, []).append(o.detach().clone()))


def generate(pipe, subjects, steps=2):
    return pipe("a photo of <1>", subjects, generator=torch.Generator().manual_seed(0), num_inference_steps=steps,
                output_type="latent", **SIZE).images


def zero_adapter(transformer, name):
    from smg_sdk.backends.flux.lora import lora_layers

    with torch.no_grad():
        for _, layer in lora_layers(transformer, name):
            layer.lora_B[name].weight.zero_()


@pytest.mark.parametrize("mode", ["concat", "cached"])
def test_stream_adapter_changes_only_its_stream(backend, images, mode):
    subjects = [Subject(images[0], "dog")]
    block = backend.transformer.transformer_blocks[0]
    base_acts: dict = {}
    hooks = [capture(block.attn.to_q, base_acts, "image"), capture(block.attn.add_q_proj, base_acts, "text")]
    base = generate(make_pipe(backend, mode, adapter=None), subjects)
    for h in hooks:
        h.remove()

    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=4, init_lora_weights=False)
    acts: dict = {}
    hooks = [capture(block.attn.to_q, acts, "image"), capture(block.attn.add_q_proj, acts, "text")]
    routed = generate(make_pipe(backend, mode), subjects)
    for h in hooks:
        h.remove()

    image_tokens = 16  # 64x64 image -> 4x4 packed tokens
    # First block, first step: target and text tokens see identical inputs, so their
    # projections must be unchanged by the adapter, while the reference's must change.
    if mode == "concat":
        assert torch.allclose(acts["image"][0][:, :image_tokens], base_acts["image"][0][:, :image_tokens], atol=1e-6)
        assert not torch.allclose(acts["image"][0][:, image_tokens:], base_acts["image"][0][:, image_tokens:], atol=1e-4)
    else:
        # the first call is the reference's own pass (adapter on), the second the denoising pass (adapter off)
        assert not torch.allclose(acts["image"][0], base_acts["image"][0], atol=1e-4)
        assert torch.allclose(acts["image"][1], base_acts["image"][1], atol=1e-6)
    assert torch.allclose(acts["text"][0], base_acts["text"][0], atol=1e-6)
    assert (routed - base).abs().max() > 1e-4  # the adapter matters through attention

    zero_adapter(backend.transformer, "subject")
    restored = generate(make_pipe(backend, mode), subjects)
    assert (restored - base).abs().max() <= 1e-6


def test_plain_run_unaffected_by_stream_adapter(backend):
    """A stream adapter is off when no stream names it."""
    pipe = SubjectPipeline(backend, [FluxTextEncoder()], schedule=ConstantSchedule())
    pipe.set_progress_bar_config(disable=True)
    before = pipe("a cat", seed=0, num_inference_steps=2, output_type="latent", **SIZE).images
    backend.add_stream_adapter("subject", rank=4, init_lora_weights=False)
    after = pipe("a cat", seed=0, num_inference_steps=2, output_type="latent", **SIZE).images
    assert torch.equal(before, after)


def test_modulation_adapter_refused_in_concat_mode(backend, images):
    from smg_sdk.errors import BackendError

    backend.add_stream_adapter("subject", rank=2, target_modules=["norm1.linear", "to_q"], init_lora_weights=False)
    with pytest.raises(BackendError, match="modulation layer"):
        generate(make_pipe(backend, "concat"), [Subject(images[0], "dog")], steps=1)


@pytest.mark.parametrize(
    "name,role",
    [
        ("transformer_blocks.0.attn.to_q", "image"),
        ("transformer_blocks.0.attn.add_k_proj", "text"),
        ("transformer_blocks.0.ff_context.net.2", "text"),
        ("transformer_blocks.0.norm1.linear", "timestep"),
        ("single_transformer_blocks.0.proj_out", "joint"),
        ("single_transformer_blocks.0.norm.linear", "timestep"),
        ("proj_out", "image"),
        ("context_embedder", "text"),
    ],
)
def test_token_roles(name, role):
    assert token_role(name) == role


def test_lora_file_matches_diffusers(backend, tiny_path, tmp_path):
    """A standard diffusers/peft LoRA file has the same effect as FluxPipeline.load_lora_weights."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = FluxTransformer2DModel.from_pretrained(tiny_path / "transformer")
    torch.manual_seed(1)
    donor.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_mlp"],
                                 init_lora_weights=False))
    FluxPipeline.save_lora_weights(str(tmp_path), transformer_lora_layers=get_peft_model_state_dict(donor))
    file = tmp_path / "pytorch_lora_weights.safetensors"
    assert file.is_file()

    reference = FluxPipeline.from_pretrained(str(tiny_path), local_files_only=True)
    reference.set_progress_bar_config(disable=True)
    call = dict(num_inference_steps=2, output_type="np", max_sequence_length=32, guidance_scale=3.5, **SIZE)
    without = reference("a dog", generator=torch.Generator().manual_seed(0), **call).images
    reference.load_lora_weights(str(file), adapter_name="style")
    theirs = reference("a dog", generator=torch.Generator().manual_seed(0), **call).images

    backend.load_lora_weights(str(file), adapter_name="style")
    pipe = SubjectPipeline(backend, [FluxTextEncoder()], schedule=ConstantSchedule())
    pipe.set_progress_bar_config(disable=True)
    ours = pipe("a dog", generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type="np",
                **SIZE).images
    assert np.abs(ours - theirs).max() <= 1e-5
    assert np.abs(theirs - without).max() > 1e-3


def test_references_sharing_one_adapter_all_get_it(backend, images):
    """Two concat references routed to the same adapter: each gets it (the masks are OR-ed, not multiplied)."""
    subjects = [Subject(images[0], "dog"), Subject(images[1], "cat")]
    block = backend.transformer.transformer_blocks[0]
    base_acts: dict = {}
    hook = capture(block.attn.to_q, base_acts, "image")
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode="concat", adapter=None)],
                           schedule=ConstantSchedule())
    pipe.set_progress_bar_config(disable=True)
    pipe("<1> and <2>", subjects, seed=0, num_inference_steps=1, output_type="latent", **SIZE)
    hook.remove()
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=4, init_lora_weights=False)
    acts: dict = {}
    hook = capture(block.attn.to_q, acts, "image")
    make_pipe(backend, "concat")("<1> and <2>", subjects, seed=0, num_inference_steps=1, output_type="latent", **SIZE)
    hook.remove()
    image_tokens = 16
    assert torch.allclose(acts["image"][0][:, :image_tokens], base_acts["image"][0][:, :image_tokens], atol=1e-6)
    for ref in range(2):
        part = slice(image_tokens * (ref + 1), image_tokens * (ref + 2))
        assert not torch.allclose(acts["image"][0][:, part], base_acts["image"][0][:, part], atol=1e-4), ref
