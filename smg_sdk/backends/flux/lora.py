"""Per-stream LoRA routing: an adapter named on a stream acts on that stream's tokens only.

Two mechanisms, both on peft's public layer objects, never on FLUX's block code:

- *cached* streams run in a pass of their own, so their adapter is simply enabled for that
  pass (``set_adapters``) and disabled for the denoising passes;
- *concat* streams share the pass with the target, so a forward hook on each of the
  adapter's ``lora_B`` modules multiplies the LoRA update by a 0/1 mask over token
  positions. peft computes ``base(x) + lora_B(lora_A(x)) * scale``, so zeroing ``lora_B``'s
  output at a position removes the adapter there exactly.

Which token positions a layer sees depends on where it sits in FLUX: context-side layers of
double blocks see the text sequence, image-side layers see ``[image, concat references]``,
single blocks see the joint sequence. Modulation layers (``norm*.linear``, timestep
embedders) act on the timestep, not on tokens; an adapter there cannot be routed per token
and is refused in concat mode.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ...adapters import lora_layers, unwrap_model
from ...errors import BackendError

CONTEXT_PARTS = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context", "context_embedder")
TIMESTEP_PARTS = ("norm1.", "norm1_context.", ".norm.", "norm_out", "time_text_embed")

DEFAULT_TARGET_MODULES = [
    "to_q", "to_k", "to_v", "to_out.0",
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
    "proj_mlp",
]
"""Token-wise layers of FLUX blocks a stream adapter targets by default (no modulation layers)."""

__all__ = ["DEFAULT_TARGET_MODULES", "activate_adapters", "lora_layers", "route_adapter", "token_role"]


def token_role(module_name: str) -> str:
    """'text', 'image', 'joint' or 'timestep': which sequence a FLUX layer's input is."""
    padded = f".{module_name}."
    if any(part in padded for part in TIMESTEP_PARTS):
        return "timestep"
    if module_name.startswith("single_transformer_blocks."):
        return "joint"
    if any(part in module_name for part in CONTEXT_PARTS):
        return "text"
    return "image"


@contextmanager
def route_adapter(
    model: nn.Module,
    adapter: str,
    joint_mask: torch.Tensor,
    text_length: int,
) -> Iterator[None]:
    """Within the block, ``adapter`` only changes tokens where ``joint_mask`` is true.

    ``joint_mask`` is ``(batch, text + image + concat references)``, in joint-sequence order.
    """
    layers = lora_layers(model, adapter)
    if not layers:
        raise BackendError(f"Stream adapter {adapter!r} is not loaded in the transformer; add it before generating.")
    handles = []
    masks = {
        "text": joint_mask[:, :text_length],
        "image": joint_mask[:, text_length:],
        "joint": joint_mask,
    }
    try:
        for name, layer in layers:
            role = token_role(name)
            if role == "timestep":
                raise BackendError(
                    f"Adapter {adapter!r} has a LoRA on {name}, a modulation layer that acts on the timestep, not on "
                    "tokens, so it cannot be limited to one stream in concat mode. Use mode='cached' for that stream "
                    "or leave modulation layers out of the adapter's target_modules."
                )
            if getattr(layer, "use_dora", {}).get(adapter, False):
                raise BackendError(f"Adapter {adapter!r} uses DoRA, which cannot be routed per token; use plain LoRA.")
            mask = masks[role]

            def hook(_module, _inputs, output, mask=mask):
                if output.ndim != 3 or output.shape[1] != mask.shape[1]:
                    raise BackendError(
                        f"Routing adapter {adapter!r}: a layer produced {tuple(output.shape)} but the stream mask "
                        f"covers {mask.shape[1]} tokens."
                    )
                return output * mask[..., None].to(output.dtype)

            handles.append(layer.lora_B[adapter].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def peft_loaded(model: nn.Module) -> bool:
    return bool(getattr(model, "_hf_peft_config_loaded", False))


def activate_adapters(model: nn.Module, weights: dict[str, float]) -> None:
    """Make exactly the adapters in ``weights`` active, with those weights (none: all off).

    peft's activation also sets ``requires_grad`` on adapter weights as a side effect. The
    backend switches adapters around every pass, and autograd drops the gradient of a leaf
    whose ``requires_grad`` was cleared before backward, so the flags are put back as the
    caller (e.g. a trainer) set them.
    """
    if not peft_loaded(model):
        if weights:
            raise BackendError(f"Adapters {sorted(weights)} were requested but the transformer has none loaded.")
        return
    model = unwrap_model(model)
    flags = [(p, p.requires_grad) for name, p in model.named_parameters() if "lora_" in name]
    try:
        if not weights:
            model.disable_adapters()
        else:
            model.enable_adapters()
            model.set_adapters(list(weights), list(weights.values()))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------- global LoRA files
# A LoRA file may touch the transformer, the CLIP text encoder, or both. Everything here goes
# through peft's layer objects (and diffusers' helpers built on them), not transformers' PEFT
# integration methods, which refuse to run unless peft is newer than some transformers
# releases require (transformers 5.24 asks for peft >= 0.22 even to read an adapter back).


def adapter_names(model: nn.Module | None) -> set[str]:
    """Names of the peft adapters ``model`` holds (empty for a model without any)."""
    return set(getattr(model, "peft_config", None) or {}) if model is not None else set()


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` from every peft layer of ``model`` and from its config."""
    from diffusers.utils.peft_utils import delete_adapter_layers

    delete_adapter_layers(model, name)
    config = getattr(model, "peft_config", None)
    if isinstance(config, dict):
        config.pop(name, None)
        if not config and getattr(model, "_hf_peft_config_loaded", None) is not None:
            del model.peft_config
            model._hf_peft_config_loaded = False


def set_text_encoder_adapters(model: nn.Module, weights: dict[str, float]) -> None:
    """Make exactly the adapters in ``weights`` active in a text encoder, each scaled by its weight."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    held = adapter_names(model)
    active = {name: w for name, w in weights.items() if name in held}
    if held:
        set_weights_and_activate_adapters(model, list(active), list(active.values()))


def adapter_tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s LoRA tensors (peft key format), each its own contiguous copy.

    Converted kohya files share one ``lora_A`` between fused q/k/v layers; safetensors refuses
    to save tensors that share memory, so every tensor is cloned.
    """
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unwrap_model(model), adapter_name=name)
    return {key: value.detach().contiguous().clone() for key, value in state.items()}


def adapter_metadata(model: nn.Module, name: str) -> dict:
    """The adapter's LoraConfig as JSON values (sets as sorted lists; alphas read from files as floats)."""
    return _json_safe(model.peft_config[name].to_dict())


def _json_safe(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, set):
        return sorted(_json_safe(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
