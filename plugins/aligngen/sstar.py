"""The learnable token S*: one input embedding per text encoder, shared by every concept.

The embeddings are plain parameters, so ``SubjectPipeline.save_pretrained`` stores them as
safetensors with the encoder that owns them. They start uninitialised and are set from the
text encoders' own embedding table the first time they meet a backend (the backend's sizes
are not known when the registry builds the component); the ``initialized`` flag is saved
with them, so a reloaded S* is never re-initialised.
"""

from __future__ import annotations

import torch
from torch import nn


class LearnableToken(nn.Module):
    """S*: a T5 input embedding and, when ``clip_dim > 0``, a CLIP one."""

    def __init__(self, t5_dim: int, clip_dim: int = 0):
        super().__init__()
        self.t5 = nn.Parameter(torch.zeros(t5_dim))
        self.clip = nn.Parameter(torch.zeros(clip_dim)) if clip_dim > 0 else None
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def is_initialized(self) -> bool:
        return bool(self.initialized)

    @torch.no_grad()
    def initialize(self, t5: torch.Tensor, clip: torch.Tensor | None = None) -> None:
        """Set the embeddings (in place, so optimisers holding the parameters keep them)."""
        self.t5.copy_(t5.to(self.t5))
        if self.clip is not None and clip is not None:
            self.clip.copy_(clip.to(self.clip))
        self.initialized.fill_(True)

    @staticmethod
    def substitute(embeds: torch.Tensor, positions: list[int], value: torch.Tensor) -> torch.Tensor:
        """``embeds (B, L, D)`` with rows ``positions`` replaced by ``value (D,)``, differentiably."""
        if not positions:
            return embeds
        mask = torch.zeros(embeds.shape[1], dtype=torch.bool, device=embeds.device)
        mask[positions] = True
        value = value.to(device=embeds.device, dtype=embeds.dtype)
        return torch.where(mask[None, :, None], value[None, None, :], embeds)
