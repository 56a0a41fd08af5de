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

from ...placement import parse_dtype

if TYPE_CHECKING:  # pragma: no cover
    from ...pipeline import SubjectPipeline

REFERENCE_LORA_DEFAULTS: dict[str, Any] = {"height": 512, "width": 512, "num_inference_steps": 28,
                                           "guidance_scale": 3.5}
"""OminiControl's subject setting: 512 px, 28 steps, guidance 3.5."""
REFERENCE_ADAPTER = "reference"


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
        if not Path(lora_path).expanduser().exists():
            from ...errors import ModelLoadError

            raise ModelLoadError(f"lora_path: no file or folder at {str(lora_path)!r}; pass the reference LoRA "
                                 "file (pytorch_lora_weights.safetensors) or the folder holding it.")
        backend.load_stream_adapter(REFERENCE_ADAPTER, str(Path(lora_path).expanduser()))
    pipe = tiny_pipeline(backend, reference_mode, position, REFERENCE_ADAPTER if lora_path is not None else None)
    pipe.defaults = dict(REFERENCE_LORA_DEFAULTS)
    return pipe.place(device, None, offload)


def composed_preset(path: str | Path, redux_path: str | Path, mllm_path: str | Path, clip_path: str | Path,
                    aggregator_path: str | Path | None = None, planner_adapter_path: str | Path | None = None, *,
                    aggregator: str = "dla", layer_stride: int = 3, image_size: int = 448, layout_mode: str = "hard",
                    dtype: str | None = "bf16", device: str | None = None, offload: str | None = None,
                    max_sequence_length: int = 512, planner_settings: dict[str, Any] | None = None,
                    **aligngen_options: Any) -> "SubjectPipeline":
    """AlignGen + Squeeze-MLLM + MUSIC on one FLUX.1 backend, composed from registered names.

    As ``examples/compose_all.py`` at real size: the ``aligngen`` preset (``path``, ``redux_path``:
    FLUX.1-Redux-dev as downloaded, ``aligngen_options``), plus the ``squeeze-mllm`` encoder on
    ``mllm_path`` (a Qwen2.5-VL folder) with its ``aggregator`` (weights from ``aggregator_path``),
    the multi-stage schedule, and MUSIC's ``music-layout`` rule, ``music`` planner (the same
    MLLM folder, with ``planner_adapter_path`` if given, and ``planner_settings`` such as
    ``max_attempts``) and ``clip-text`` verifier on
    ``clip_path``. ``dtype`` is every large model's (FLUX, MLLM, CLIP verifier); ``device`` and
    ``offload`` as :meth:`SubjectPipeline.place`. Needs the aligngen, squeeze_mllm and music
    plugins installed (:class:`~smg_sdk.errors.RegistryError` names a missing component).
    """
    from ...pipeline import SubjectPipeline
    from ...plugins.manager import get_registry

    registry = get_registry()
    name = str(parse_dtype(dtype)).removeprefix("torch.") if dtype is not None else None
    load_on = device if offload in (None, "none") else None
    base = SubjectPipeline.from_preset("aligngen", path=str(path), redux_path=str(redux_path), dtype=dtype,
                                       max_sequence_length=max_sequence_length, **aligngen_options)
    mllm = registry.build("encoder", "squeeze-mllm", model=str(mllm_path), layer_stride=layer_stride,
                          image_size=image_size, dtype=name, device=load_on)
    pooling = registry.build("aggregator", aggregator, num_layers=len(mllm.layers), in_dim=mllm.mllm.hidden_size,
                             out_dim=base.backend.text_width)
    if aggregator_path is not None:
        pooling.load_state_dict(load_adapter_file(aggregator_path, "aggregator_path"))
    planner = registry.build("planner", "music", model_path=str(mllm_path), image_size=image_size, torch_dtype=name,
                             device=load_on, adapter_path=str(planner_adapter_path) if planner_adapter_path else None,
                             **(planner_settings or {}))
    pipe = SubjectPipeline(
        base.backend, encoders=[*base.encoders, mllm], aggregators=[pooling, *base.aggregators],
        rules=[*base.rules, registry.build("rule", "music-layout", mode=layout_mode)],
        schedule=registry.build("schedule", "multistage"), planner=planner,
        verifier=registry.build("verifier", "clip-text", model_path=str(clip_path), torch_dtype=name, device=load_on),
        defaults=base.defaults,
    )
    return pipe.place(device, None, offload)


def load_adapter_file(path: str | Path, argument: str) -> dict[str, torch.Tensor]:
    """A safetensors state dict from ``path``; :class:`ModelLoadError` naming ``argument`` if it is not a file."""
    from safetensors.torch import load_file

    from ...errors import ModelLoadError

    if not Path(path).is_file():
        raise ModelLoadError(f"{argument}: no file at {str(path)!r}; pass the .safetensors file training wrote.")
    return load_file(str(path))


__all__ = ["REFERENCE_LORA_DEFAULTS", "composed_preset", "load_adapter_file", "parse_dtype", "reference_lora_preset"]
