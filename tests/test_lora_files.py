"""Issue 13: LoRA files as the FLUX community publishes them, on the tiny FLUX.

Synthetic files of each format diffusers' FluxLoraLoaderMixin reads are built here (kohya
``lora_unet_*``/``lora_te1_*`` with ``.alpha``, ComfyUI ``diffusion_model.*``, XLabs
``*.processor.*``, diffusers/peft with ``.alpha`` keys, and diffusers/peft with a text-encoder
part): each loads, applies its weight to every component it touches, and survives
save_pretrained -> from_pretrained exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from smg_sdk.errors import ModelLoadError

RANK = 2
DIM, SINGLE_MLP, CLIP, CLIP_MLP = 128, 512, 32, 64  # the tiny FLUX's widths


def _pair(g: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(RANK, fan_in, generator=g) * 0.5, torch.randn(fan_out, RANK, generator=g) * 0.5


def kohya_te(g: torch.Generator, prefix: str = "lora_te1_text_model_encoder_layers") -> dict[str, torch.Tensor]:
    sd = {}
    for layer in range(2):
        names = [(f"self_attn_{p}_proj", CLIP, CLIP) for p in ("q", "k", "v", "out")]
        names += [("mlp_fc1", CLIP, CLIP_MLP), ("mlp_fc2", CLIP_MLP, CLIP)]
        for part, fan_in, fan_out in names:
            key = f"{prefix}_{layer}_{part}"
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = _pair(g, fan_in, fan_out)
            sd[f"{key}.alpha"] = torch.tensor(float(RANK))
    return sd


def kohya(g: torch.Generator, unet: bool = True, te: bool = True, prefix: str = "lora_unet_") -> dict:
    sd: dict[str, torch.Tensor] = {}
    if unet:
        for name, fan_in, fan_out in [("double_blocks_0_img_attn_qkv", DIM, 3 * DIM),  # fused: one lora_down
                                      ("double_blocks_0_img_attn_proj", DIM, DIM),
                                      ("single_blocks_0_linear2", DIM + SINGLE_MLP, DIM)]:
            sd[f"{prefix}{name}.lora_down.weight"], sd[f"{prefix}{name}.lora_up.weight"] = _pair(g, fan_in, fan_out)
            sd[f"{prefix}{name}.alpha"] = torch.tensor(float(RANK) * 2)
    if te:
        sd.update(kohya_te(g))
    return sd


def comfy(g: torch.Generator) -> dict:
    return {k.replace("lora_unet_", "diffusion_model.", 1) if k.startswith("lora_unet_") else k: v
            for k, v in kohya(g, te=False).items()}


def xlabs(g: torch.Generator) -> dict:
    sd = {}
    for name, fan_in, fan_out in [("double_blocks.0.processor.qkv_lora1", DIM, 3 * DIM),
                                  ("double_blocks.0.processor.proj_lora1", DIM, DIM)]:
        sd[f"{name}.down.weight"], sd[f"{name}.up.weight"] = _pair(g, fan_in, fan_out)
    return sd


def peft_with_alphas(g: torch.Generator, text_encoder: bool = True) -> dict:
    sd = {}
    for target, fan_in, fan_out in [("transformer.transformer_blocks.0.attn.to_q", DIM, DIM),
                                    ("transformer.single_transformer_blocks.0.proj_mlp", DIM, SINGLE_MLP)]:
        sd[f"{target}.lora_A.weight"], sd[f"{target}.lora_B.weight"] = _pair(g, fan_in, fan_out)
        sd[f"{target}.alpha"] = torch.tensor(float(RANK))
    if text_encoder:
        for proj in ("q_proj", "v_proj"):
            target = f"text_encoder.text_model.encoder.layers.0.self_attn.{proj}"
            sd[f"{target}.lora_A.weight"], sd[f"{target}.lora_B.weight"] = _pair(g, CLIP, CLIP)
    return sd


FORMATS = {
    "kohya": lambda g: kohya(g),
    "kohya-te-only": lambda g: kohya(g, unet=False),
    "comfyui": comfy,
    "xlabs": xlabs,
    "peft-alpha": lambda g: peft_with_alphas(g, text_encoder=False),
    "peft-te": peft_with_alphas,
}


def state(fmt: str) -> dict[str, torch.Tensor]:
    return FORMATS[fmt](torch.Generator().manual_seed(7))


def outputs(backend) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP pooled of a prompt, one transformer velocity): what a global LoRA can change."""
    pooled = backend.encode_pooled("a red dog").clone()
    from smg_sdk.attention.passes import build_attention_pass
    from smg_sdk.backends.flux.sampler import predict_velocity
    from smg_sdk.backends.flux.encoders import FluxTextEncoder
    from smg_sdk.types import Request

    conditions = FluxTextEncoder().encode(Request("a red dog", height=32, width=32), backend)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 64, generator=g)
    with torch.no_grad():
        attention = build_attention_pass(conditions, latents.shape[1])
        velocity = predict_velocity(backend, attention, latents, torch.tensor([0.5]), height=32, width=32)
    return pooled, velocity


def touched(fmt: str) -> set[str]:
    keys = " ".join(state(fmt))
    parts = set()
    if re.search(r"lora_te1_|text_encoder\.", keys):
        parts.add("text")
    if re.search(r"lora_unet_|diffusion_model\.|processor|transformer\.", keys):
        parts.add("transformer")
    return parts


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_loads_and_round_trips_exactly(backend, tiny_path, tmp_path, fmt):
    from smg_sdk.pipeline import SubjectPipeline

    base_pooled, base_velocity = outputs(backend)
    name = backend.load_lora_weights(state(fmt), adapter_name="style", weight=0.7)
    pooled, velocity = outputs(backend)
    parts = touched(fmt)
    assert ((pooled - base_pooled).abs().max() > 1e-4) == ("text" in parts)
    assert ("style" in (getattr(backend.transformer, "peft_config", None) or {})) == ("transformer" in parts)
    if "text" not in parts:
        assert (velocity - base_velocity).abs().max() > 1e-5

    pipe = SubjectPipeline.compose(backend=backend, encoders=["flux-text"])
    pipe.save_pretrained(tmp_path / "saved")
    again = SubjectPipeline.from_pretrained(tmp_path / "saved", allow_external=[tiny_path])
    assert again.backend.adapter_weights == {name: 0.7}
    pooled2, velocity2 = outputs(again.backend)
    assert torch.equal(pooled2, pooled) and torch.equal(velocity2, velocity)


def test_weight_applies_to_the_text_encoder_part(backend):
    base_pooled, base_velocity = outputs(backend)
    backend.load_lora_weights(state("kohya"), weight=0.0)
    pooled, velocity = outputs(backend)
    assert torch.allclose(pooled, base_pooled, atol=1e-6)
    assert torch.allclose(velocity, base_velocity, atol=1e-6)


def test_text_encoder_only_lora_loads_and_is_active(backend):
    base_pooled, _ = outputs(backend)
    name = backend.load_lora_weights(state("kohya-te-only"))
    assert name in backend.adapter_weights and not getattr(backend.transformer, "peft_config", None)
    assert (outputs(backend)[0] - base_pooled).abs().max() > 1e-4


def test_failed_load_leaves_nothing_behind(backend):
    base_pooled, base_velocity = outputs(backend)
    broken = kohya(torch.Generator().manual_seed(1))
    broken["lora_unet_double_blocks_0_img_attn_proj.lora_up.weight"] = torch.randn(DIM + 1, RANK)  # wrong shape
    with pytest.raises(ModelLoadError, match="nothing was loaded"):
        backend.load_lora_weights(broken, adapter_name="broken")
    assert backend.adapter_weights == {}
    for model in (backend.transformer, backend.text_encoder):
        assert "broken" not in (getattr(model, "peft_config", None) or {})
    pooled, velocity = outputs(backend)
    assert torch.equal(pooled, base_pooled) and torch.equal(velocity, base_velocity)
    assert backend.load_lora_weights(state("kohya"), adapter_name="broken") == "broken"  # the name is free again


def test_dependency_floors_cover_what_diffusers_needs():
    """pyproject's peft/transformers floors are at least what diffusers' PEFT backend requires.

    Below diffusers' MIN_PEFT_VERSION, ``load_lora_weights`` refuses to run at all. The text-
    encoder LoRA code uses peft directly, not transformers' PEFT methods (which transformers 5.24
    gates behind peft >= 0.22, newer than released peft), so the installed set round-trips
    text-encoder LoRAs (the tests above) whatever transformers asks of peft.
    """
    import tomllib

    from diffusers.utils import constants
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    floors = {}
    for line in project["project"]["dependencies"]:
        req = Requirement(line)
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        floors[req.name] = max(lows) if lows else None
    assert floors["peft"] >= Version(constants.MIN_PEFT_VERSION), floors["peft"]
    assert floors["transformers"] >= Version(constants.MIN_TRANSFORMERS_VERSION)
    assert constants.USE_PEFT_BACKEND
