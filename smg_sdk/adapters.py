"""Backend-neutral helpers over peft's LoRA layers (any ``torch.nn.Module`` peft has injected into)."""

from __future__ import annotations

from torch import nn


def lora_layers(model: nn.Module, adapter: str) -> list[tuple[str, nn.Module]]:
    """(module name, peft LoRA layer) pairs of ``model`` that hold ``adapter``."""
    from peft.tuners.lora import LoraLayer

    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer) and adapter in getattr(module, "lora_B", {})
    ]
