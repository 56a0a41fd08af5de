"""What the pipeline needs from a diffusion backend."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image


@runtime_checkable
class Backend(Protocol):
    """A diffusion model the pipeline can condition on streams.

    The FLUX backend is the reference implementation; a backend for another DiT needs the
    same surface: text encoding, image encoding to reference tokens, the denoising loop over
    a :class:`~smg_sdk.conditions.ConditionSet`, decoding, and save/load.
    """

    device: torch.device
    dtype: torch.dtype
    size_multiple: int

    def encode_prompt(self, prompt: str) -> Any: ...

    def encode_images(self, images: list[Image.Image], height: int, width: int) -> Any: ...

    def encode_references(self, images: list[Image.Image], height: int, width: int) -> Any:
        """Reference tokens, aspect ratio kept inside the box (optional: encoders fall back to encode_images)."""
        ...

    def denoise(self, conditions: Any, **kwargs: Any) -> Any: ...

    def decode(self, latents: torch.Tensor, height: int, width: int, output_type: str = "pil") -> Any: ...

    def save_pretrained(self, folder: str) -> dict[str, Any]: ...
