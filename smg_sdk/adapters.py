"""Backend-neutral helpers over peft's LoRA layers (any ``torch.nn.Module`` peft has injected into).

Module names are the model's own, whatever wraps it: ``torch.compile`` returns an
``OptimizedModule`` whose ``named_modules()`` prefixes every name with ``_orig_mod.``, so the
helpers look through it (:func:`unwrap_model`). Offload hooks (accelerate's, diffusers'
group offload) wrap ``forward`` in place and rename nothing.
"""

from __future__ import annotations

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module ``torch.compile`` wrapped (repeatedly), else ``model`` itself.

    Follows diffusers' ``unwrap_module`` (diffusers 0.42.1, ``utils/torch_utils.py``) through
    any number of nested compilations.
    """
    from diffusers.utils.torch_utils import unwrap_module

    inner = unwrap_module(model)
    while inner is not model:
        model, inner = inner, unwrap_module(inner)
    return model


def lora_layers(model: nn.Module, adapter: str) -> list[tuple[str, nn.Module]]:
    """(module name, peft LoRA layer) pairs of ``model`` that hold ``adapter``; names as in the unwrapped model."""
    from peft.tuners.lora import LoraLayer

    return [
        (name, module)
        for name, module in unwrap_model(model).named_modules()
        if isinstance(module, LoraLayer) and adapter in getattr(module, "lora_B", {})
    ]
