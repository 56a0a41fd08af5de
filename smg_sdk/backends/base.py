"""What pipelines, trainers and plugins may use of a diffusion backend: the whole contract.

The FLUX backend (:class:`smg_sdk.backends.flux.FluxBackend`) is the reference
implementation. A backend for another DiT implements this surface and nothing in the core
changes: the core builds the attention passes (:mod:`smg_sdk.attention.passes`) and the
typed :class:`~smg_sdk.sampling.SamplingCall`; the backend encodes, samples and decodes.
Plugins that need more than this (a FLUX tokenizer, say) depend on FLUX by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import torch
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from ..attention.passes import AttentionPass
    from ..conditions import ConditionSet
    from ..sampling import SampleResult, SamplingCall


@runtime_checkable
class Backend(Protocol):
    """A diffusion model the pipeline can condition on streams.

    Widths and grids:

    - ``text_width``: ``D`` of text-side stream tokens ``(B, L, D)`` (FLUX: ``joint_attention_dim``).
    - ``latent_channels``: channels of the unpacked latents; packed image and reference tokens
      are ``(B, rows * cols, 4 * latent_channels)`` (2x2 packing).
    - ``size_multiple``: image sides in pixels must be multiples of it (VAE factor x packing).
    - ``token_grid(height, width) -> (rows, cols)``: the packed token grid of an image.
    - ``text_position_ids(length) -> (length, 3)``: RoPE ids of text-side tokens.
    """

    device: torch.device
    dtype: torch.dtype
    size_multiple: int
    text_width: int
    latent_channels: int

    def token_grid(self, height: int, width: int) -> tuple[int, int]: ...

    def text_position_ids(self, length: int) -> torch.Tensor: ...

    # -- encoding
    def encode_prompt(self, prompt: str) -> Any:
        """The prompt's text tokens ``embeds`` ``(1, L, text_width)``, ``pooled`` ``(1, P)``, ``offsets`` per token."""
        ...

    def encode_pooled(self, prompt: str) -> torch.Tensor:
        """The pooled text embedding ``(1, P)`` alone."""
        ...

    def encode_images(self, images: list[Image.Image], height: int, width: int) -> Any:
        """Per image, packed latents ``(1, rows * cols, 4 * latent_channels)`` of the image resized to the box."""
        ...

    def encode_references(self, images: list[Image.Image], height: int, width: int) -> Any:
        """As :meth:`encode_images`, aspect ratio kept inside the box, each image on its own grid."""
        ...

    # -- sampling
    def check_conditions(self, conditions: "ConditionSet") -> int:
        """The batch size of ``conditions``; raises BackendError for streams this backend cannot use."""
        ...

    def sample(self, call: "SamplingCall") -> "SampleResult":
        """Run the sampler on a core-built call; final packed latents ``(B, rows * cols, channels)``."""
        ...

    def velocity(self, attention: "AttentionPass", latents: torch.Tensor, sigmas: torch.Tensor, *, height: int,
                 width: int, guidance_scale: float = 1.0) -> torch.Tensor:
        """Differentiable velocity ``(B, rows * cols, channels)`` for noisy packed latents at levels ``sigmas`` (B,) in [0, 1]."""
        ...

    def decode(self, latents: torch.Tensor, height: int, width: int, output_type: str = "pil") -> Any:
        """Packed latents to images: ``"pil"`` list, ``"np"`` ``(B, H, W, 3)``, ``"pt"`` ``(B, 3, H, W)`` in [0, 1], or ``"latent"``."""
        ...

    # -- adapters
    def add_stream_adapter(self, name: str, *args: Any, **kwargs: Any) -> None:
        """A new LoRA adapter that acts only on the tokens of the streams that name it."""
        ...

    def load_stream_adapter(self, name: str, path_or_state_dict: Any) -> None: ...

    def save_adapter(self, name: str, folder: str | Path) -> Path: ...

    def adapter_parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        """The trainable parameters of adapter ``name`` by qualified name (what a trainer optimises)."""
        ...

    # -- models, placement and saving
    def modules(self) -> dict[str, torch.nn.Module]:
        """Every model of the backend by component name."""
        ...

    def encoding_modules(self) -> Sequence[torch.nn.Module]:
        """The models that only encode inputs (frozen when a trainer caches encodings)."""
        ...

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Backend": ...

    def save_pretrained(self, folder: str) -> dict[str, Any]: ...
