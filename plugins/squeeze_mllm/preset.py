"""The ``squeeze-tiny`` preset: tiny FLUX + tiny Qwen2.5-VL with DLA, VAE identity, multi-stage.

Weights the project trains (aggregator, identity LoRA) live in ``weights/`` beside this file;
when present they are loaded, otherwise the components start from a fixed seed. Training new
weights is therefore a data change, not a code change.
"""

from __future__ import annotations

from pathlib import Path

import torch

from smg_sdk import SubjectPipeline, get_registry

IDENTITY_ADAPTER = "squeeze-identity"
WEIGHTS = Path(__file__).parent / "weights"


def squeeze_tiny(reference_mode: str = "cached", position: str = "omini", aggregator: str = "dla",
                 layer_stride: int = 3, rank: int = 4, image_size: int = 64) -> SubjectPipeline:
    registry = get_registry()
    base = SubjectPipeline.from_preset("tiny")
    backend = base.backend
    mllm_encoder = registry.build("encoder", "squeeze-mllm", model="tiny", layer_stride=layer_stride,
                                  image_size=image_size)
    encoders = [
        registry.build("encoder", "flux-text", t5=False),
        mllm_encoder,
        registry.build("encoder", "vae-reference", mode=reference_mode, position=position, adapter=IDENTITY_ADAPTER),
    ]
    lora_file = WEIGHTS / IDENTITY_ADAPTER / "pytorch_lora_weights.safetensors"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if lora_file.is_file():
            backend.load_stream_adapter(IDENTITY_ADAPTER, str(lora_file))
        else:
            backend.add_stream_adapter(IDENTITY_ADAPTER, rank=rank)
        pooling = registry.build("aggregator", aggregator, num_layers=len(mllm_encoder.layers),
                                 in_dim=mllm_encoder.mllm.hidden_size, out_dim=backend.text_width)
    weights = WEIGHTS / f"{aggregator}.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        pooling.load_state_dict(load_file(str(weights)))
    return SubjectPipeline(backend, encoders, [pooling], schedule=registry.build("schedule", "multistage"),
                           defaults=base.defaults)
