"""Stream-LoRA routing and adapter files survive wrappers: ``torch.compile`` and offload hooks.

``torch.compile(transformer)`` returns an ``OptimizedModule`` whose module names gain an
``_orig_mod.`` prefix; routing reads layer names to know which sequence a layer sees, so it
must look through the wrapper. Compilation here uses the ``eager`` backend (dynamo traces,
no code generation) on a two-block FLUX: the naming is what is under test, and tracing the
tiny preset's six blocks takes ~25 s on this CPU, two blocks ~12 s.
"""

from __future__ import annotations

import torch
from PIL import Image

from smg_sdk import Request, Subject, get_registry
from smg_sdk.adapters import lora_layers
from smg_sdk.attention.passes import build_attention_pass
from smg_sdk.backends.flux.encoders import FluxTextEncoder
from smg_sdk.backends.flux.sampler import predict_velocity

ADAPTER = "ref"


def _velocity(backend) -> torch.Tensor:
    request = Request("a photo of <1>", subjects=[Subject(Image.new("RGB", (32, 32), "red"))], height=32, width=32)
    reference = get_registry().build("encoder", "vae-reference", mode="concat", position="omini", adapter=ADAPTER)
    conditions = FluxTextEncoder().encode(request, backend).with_streams(reference.encode(request, backend).streams)
    latents = torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return predict_velocity(backend, build_attention_pass(conditions, 4), latents, torch.tensor([0.5]),
                                height=32, width=32)


def test_concat_routing_and_adapter_files_survive_torch_compile(backend):
    """A real (traced) compile of a one-double-block, one-single-block FLUX at the tiny widths."""
    from diffusers import FluxTransformer2DModel

    from smg_sdk import FluxBackend

    torch.manual_seed(0)
    small = FluxTransformer2DModel.from_config({**backend.transformer.config, "num_layers": 1, "num_single_layers": 1})
    backend = FluxBackend(**{**backend.components, "transformer": small}, max_sequence_length=backend.max_sequence_length)
    backend.add_stream_adapter(ADAPTER, rank=4, init_lora_weights=False)  # random B: the adapter changes outputs
    names = [name for name, _ in lora_layers(backend.transformer, ADAPTER)]
    state = backend.adapter_state_dict(ADAPTER)
    expected = _velocity(backend)
    plain = backend.transformer
    backend.transformer = torch.compile(plain, backend="eager")
    assert torch.allclose(_velocity(backend), expected, atol=1e-5)
    assert [name for name, _ in lora_layers(backend.transformer, ADAPTER)] == names
    assert not any("_orig_mod" in n for n in names)
    from smg_sdk.adapters import unwrap_model

    assert unwrap_model(backend.transformer) is plain and unwrap_model(plain) is plain
    compiled_state = backend.adapter_state_dict(ADAPTER)
    assert compiled_state.keys() == state.keys() and all(torch.equal(compiled_state[k], state[k]) for k in state)


def test_concat_routing_survives_an_offload_hook(backend):
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    torch.manual_seed(0)
    backend.add_stream_adapter(ADAPTER, rank=4, init_lora_weights=False)
    expected = _velocity(backend)
    add_hook_to_module(backend.transformer, ModelHook())  # what cpu/sequential offload installs, minus the moves
    try:
        assert torch.allclose(_velocity(backend), expected, atol=1e-6)
    finally:
        remove_hook_from_module(backend.transformer)
