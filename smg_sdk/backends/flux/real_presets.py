"""Real-model presets of the FLUX backend: ``reference-lora`` (also ``omini``) on a local FLUX.1 folder.

What a user downloads: ``black-forest-labs/FLUX.1-dev`` in diffusers format (``model_index.json``,
``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``,
``tokenizer_2/``, ``scheduler/``), passed as a folder or, already in the Hugging Face cache, as
its repo id; and a reference (subject) LoRA file as ``FluxBackend.save_adapter`` writes it (e.g. after
training with ``smg_sdk.training``). Memory options: ``dtype``, ``device`` and ``offload`` (see ``docs/gpu.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import RequestError

if TYPE_CHECKING:  # pragma: no cover
    from ...pipeline import SubjectPipeline

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}
REFERENCE_LORA_DEFAULTS: dict[str, Any] = {"height": 512, "width": 512, "num_inference_steps": 28,
                                           "guidance_scale": 3.5}
"""OminiControl's subject setting: 512 px, 28 steps, guidance 3.5."""
REFERENCE_ADAPTER = "reference"


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"``/``"fp16"``/``"fp32"`` (or a torch dtype, or None) as a torch dtype; RequestError otherwise."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise RequestError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}.")
    return DTYPES[str(dtype)]


def reference_lora_preset(path: str | Path, lora_path: str | Path | None = None, *, dtype: str | None = "bf16",
                          device: str | None = None, offload: str | None = None, reference_mode: str = "concat",
                          position: str = "omini", max_sequence_length: int = 512) -> "SubjectPipeline":
    """FLUX.1 text + VAE references with a stream LoRA on the reference tokens (OminiControl-style).

    ``path``: a diffusers-format FLUX.1 folder (or a repo id already in the HF cache; nothing
    is downloaded). ``lora_path``: the reference LoRA (without one, references condition only
    through attention). ``dtype``: ``bf16`` (default), ``fp16`` or ``fp32``; ``device`` and
    ``offload`` (None, ``"model"``, ``"group"``) as :meth:`SubjectPipeline.place`.
    """
    from .backend import FluxBackend
    from .plugin import tiny_pipeline

    backend = FluxBackend.from_pretrained(path, dtype=parse_dtype(dtype), max_sequence_length=max_sequence_length)
    if lora_path is not None:
        backend.load_stream_adapter(REFERENCE_ADAPTER, lora_path)
    pipe = tiny_pipeline(backend, reference_mode, position, REFERENCE_ADAPTER if lora_path is not None else None)
    pipe.defaults = dict(REFERENCE_LORA_DEFAULTS)
    return pipe.place(device, None, offload)


__all__ = ["REFERENCE_LORA_DEFAULTS", "parse_dtype", "reference_lora_preset"]
