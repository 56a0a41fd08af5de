"""Offload on a composed pipeline: accelerate model offload and diffusers group offload give the
no-offload image exactly, the hooks are really installed on every model (MLLM, SigLIP/Redux, CLIP
verifier included), the execution device comes from the hooks, and mixed placement fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import FluxBackend, PlacementError, SubjectPipeline, get_registry
from smg_sdk.placement import execution_device


@pytest.fixture(scope="module")
def composed():
    """squeeze-tiny (Qwen2.5-VL encoder, cached reference K/V, DLA aggregator) + SigLIP/Redux + CLIP verifier."""
    squeeze = SubjectPipeline.from_preset("squeeze-tiny")
    registry = get_registry()
    pipe = SubjectPipeline(squeeze.backend, [*squeeze.encoders, registry.build("encoder", "redux", side="text")],
                           squeeze.aggregators, squeeze.rules, squeeze.schedule,
                           verifier=registry.build("verifier", "clip-text"), defaults=squeeze.defaults,
                           encoding_cache=False)  # every run encodes, so every model's hook must fire
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: SubjectPipeline) -> np.ndarray:
    out = pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=2,
               height=64, width=64, num_candidates=2, output_type="np")
    return out.images


MODELS = ["backend.transformer", "backend.vae", "backend.text_encoder", "backend.text_encoder_2",
          "encoders[1].mllm.model", "encoders[3].vision", "encoders[3].redux", "verifier.clip.model"]


def test_inventory_finds_every_model(composed):
    inv = composed.placement_inventory()
    assert list(inv.models) == MODELS
    assert list(inv.resident) == ["aggregators[0]"]


def test_model_offload_same_image_and_hooks_fire(composed):
    from accelerate.hooks import CpuOffload

    reference = _run(composed)
    try:
        composed.enable_model_cpu_offload("cpu")
        models = composed.placement_inventory().models
        assert all(isinstance(getattr(m, "_hf_hook", None), CpuOffload) for m in models.values())
        image = _run(composed)
        onloads = {name: h.hook.onloads for name, h in zip(models, composed._offload_hooks)}
    finally:
        composed.disable_offload()
    np.testing.assert_array_equal(image, reference)
    # squeeze-tiny encodes text with CLIP only (t5=False): every other model was brought in by its hook,
    # the CLIP verifier through get_image_features/get_text_features (smg_sdk.placement.onload)
    assert onloads.pop("backend.text_encoder_2") == 0
    assert all(n > 0 for n in onloads.values()), onloads
    assert not any(hasattr(m, "_hf_hook") for m in models.values())


def test_group_offload_same_image_and_hooks_installed(composed):
    from diffusers.hooks.group_offloading import GroupOffloadingHook

    def group_hooks(module):
        registries = [(sub, getattr(sub, "_diffusers_hook", None)) for sub in module.modules()]
        return [sub for sub, r in registries if r is not None
                and isinstance(r.get_hook("group_offloading"), GroupOffloadingHook)]

    reference = _run(composed)
    try:
        composed.enable_group_offload("cpu", offload_type="block_level", num_blocks_per_group=1)
        models = composed.placement_inventory().models
        transformer = models["backend.transformer"]
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        assert all(b in group_hooks(transformer) for b in blocks)  # one group per block
        for name in MODELS[1:]:  # leaf level: every Linear (and Conv) layer of the other models has its own hook
            hooked = group_hooks(models[name])
            layers = [m for m in models[name].modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
            assert layers and all(layer in hooked for layer in layers), name
        image = _run(composed)
    finally:
        composed.disable_offload()
    np.testing.assert_array_equal(image, reference)
    assert not any(group_hooks(m) for m in composed.placement_inventory().models.values())


def test_execution_device_comes_from_the_hooks(tiny_path):
    """Offloaded, the transformer's parameters report cpu; the backend runs (masks, K/V) on the hooks' device."""
    from accelerate.hooks import CpuOffload, add_hook_to_module, remove_hook_from_module
    from diffusers.hooks import apply_group_offloading

    backend = FluxBackend.from_pretrained(tiny_path)
    assert backend.device == torch.device("cpu")
    add_hook_to_module(backend.transformer, CpuOffload(execution_device=torch.device("meta")))
    assert backend.transformer.device == torch.device("cpu") and backend.device == torch.device("meta")
    remove_hook_from_module(backend.transformer)
    # nothing runs here: registering hooks for an absent CUDA device only records where the groups would onload
    apply_group_offloading(backend.transformer, onload_device=torch.device("cuda"), offload_type="leaf_level")
    assert backend.device == torch.device("cuda")
    text_encoder = backend.text_encoder  # a transformers model: its .device is its parameters'
    apply_group_offloading(text_encoder, onload_device=torch.device("cuda"), offload_type="leaf_level")
    assert text_encoder.device == torch.device("cpu") and execution_device(text_encoder) == torch.device("cuda")
    assert execution_device(backend.vae) == torch.device("cpu")


def test_mixed_devices_fail_clearly(composed):
    clip = composed.placement_inventory().models["verifier.clip.model"]
    clip.to("meta")  # a component left on another device than the pipeline
    try:
        with pytest.raises(PlacementError, match=r"verifier\.clip\.model .*pipe\.to"):
            _run(composed)
    finally:
        composed.verifier.clip._model = None  # reload it from its folder on next use
        composed.placement_inventory()


def test_to_refused_while_offloaded_and_bad_options(composed):
    try:
        composed.enable_model_cpu_offload("cpu")
        with pytest.raises(PlacementError, match="disable_offload"):
            composed.to(dtype=torch.float64)
    finally:
        composed.disable_offload()
    with pytest.raises(PlacementError, match="offload_type"):
        composed.enable_group_offload("cpu", offload_type="block")
    with pytest.raises(PlacementError, match="num_blocks_per_group"):
        composed.enable_group_offload("cpu", num_blocks_per_group=0)


def test_components_in_other_dtypes_follow_their_inputs(composed):
    """SigLIP/Redux and CLIP in float64 beside a float32 FLUX: their outputs are cast where they meet, no error."""
    inv = composed.placement_inventory().models
    for name in ("encoders[3].vision", "encoders[3].redux", "verifier.clip.model"):
        inv[name].to(dtype=torch.float64)
    try:
        images = _run(composed)
    finally:
        for name in ("encoders[3].vision", "encoders[3].redux", "verifier.clip.model"):
            inv[name].to(dtype=torch.float32)
    assert np.isfinite(images).all()


def test_a_model_loaded_on_first_use_is_checked_before_the_call():
    """A CLIP verifier set to load on another device fails the placement check before any stage runs."""
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.verifier = get_registry().build("verifier", "clip-text", device="meta")
    assert pipe.verifier.clip._model is None  # not loaded yet
    with pytest.raises(PlacementError, match=r"verifier\.clip\.model \(CLIPModel\) has weights on \['meta'\]"):
        _run(pipe)


def test_components_name_models_kept_out_of_reach():
    """Models in a list are not found among attributes; placement_modules() names them, and to() moves them."""

    class ListVerifier:
        def __init__(self):
            self.nets = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]

        def score(self, images, request, plans=None):
            return [0.0] * len(images)

    class NamingVerifier(ListVerifier):
        def placement_modules(self):
            return {f"nets[{i}]": net for i, net in enumerate(self.nets)}

    pipe = SubjectPipeline.from_preset("tiny")
    pipe.verifier = ListVerifier()
    assert not any(name.startswith("verifier") for name in pipe.placement_inventory().all())
    pipe.verifier = NamingVerifier()
    assert [n for n in pipe.placement_inventory().models if n.startswith("verifier")] == ["verifier.nets[0]",
                                                                                         "verifier.nets[1]"]
    pipe.to(dtype=torch.float64)
    assert all(net.weight.dtype == torch.float64 for net in pipe.verifier.nets)
