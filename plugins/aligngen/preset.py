"""Composing AlignGen: ``aligngen-tiny`` (the embedded tiny FLUX) and ``aligngen`` (local FLUX.1).

An AlignGen pipeline is::

    encoders     aligngen-text (T5 with S*, CLIP pooled), redux (raw image tokens),
                 vae-reference (concat, omini positions, LoRA adapter on reference tokens only)
    aggregators  dem (rewrites S* from the Redux tokens, consumes them)
    rules        aligngen-mask (selective cross-modal mask), isolate-references
    backend      FLUX with a rank-16 stream adapter for the reference tokens

Every component is built by registered name, so the pipeline saves and reloads by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smg_sdk import ConditionError, SubjectPipeline

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import FluxBackend


@dataclass
class AlignGenConfig:
    """How an AlignGen pipeline is assembled (see the module docstring for the parts)."""

    stream: str = "prompt"
    marker: str = "<extra_id_0>"
    clip_token: bool = True
    init_word: str | None = "object"
    dem_heads: int | None = None
    dem_mlp_ratio: float = 4.0
    write_concepts: bool = False
    adapter: str = "aligngen-ref"
    rank: int = 16
    reference_mode: str = "concat"
    position: str = "omini"
    symmetric: bool = True
    bind_subjects: bool = True
    isolate_references: bool = True
    siglip_path: str | None = None
    redux_path: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AlignGenConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConditionError(f"Unknown AlignGen option(s) {unknown}; known options: {sorted(known)}.")
        return cls(**options)


def dem_heads(width: int, requested: int | None) -> int:
    """Heads of the DEM: as requested, else 128-wide heads (FLUX's), else 4 for tiny widths."""
    if requested:
        return int(requested)
    return width // 128 if width >= 128 and width % 128 == 0 else 4


def build_aligngen(backend: "FluxBackend", config: AlignGenConfig | None = None,
                   defaults: dict[str, Any] | None = None) -> SubjectPipeline:
    """An AlignGen pipeline on ``backend``; adds the reference LoRA adapter if it is missing."""
    from smg_sdk import get_registry

    config = config or AlignGenConfig()
    registry = get_registry()
    width = int(backend.text_width)
    if config.adapter not in getattr(backend, "stream_adapters", set()):
        backend.add_stream_adapter(config.adapter, rank=config.rank)
    cached = config.reference_mode == "cached"
    encoders = [
        registry.build("encoder", "aligngen-text", stream_name=config.stream, marker=config.marker,
                       t5_dim=int(backend.text_encoder_2.config.d_model),
                       clip_dim=int(backend.text_encoder.config.hidden_size), clip_token=config.clip_token,
                       init_word=config.init_word),
        registry.build("encoder", "redux", siglip_path=config.siglip_path, redux_path=config.redux_path),
        registry.build("encoder", "vae-reference", mode=config.reference_mode, position=config.position,
                       adapter=config.adapter, independent=cached),
    ]
    aggregators = [
        registry.build("aggregator", "dem", width=width, heads=dem_heads(width, config.dem_heads),
                       mlp_ratio=config.dem_mlp_ratio, stream=config.stream, write_concepts=config.write_concepts),
    ]
    rules = [registry.build("rule", "aligngen-mask", symmetric=config.symmetric, bind_subjects=config.bind_subjects)]
    if config.isolate_references:
        rules.append(registry.build("rule", "isolate-references"))
    return SubjectPipeline(backend, encoders, aggregators, rules, schedule=registry.build("schedule", "constant"),
                           defaults=defaults)


def aligngen_tiny(seed: int = 0, **options: Any) -> SubjectPipeline:
    """AlignGen on the embedded tiny FLUX, SigLIP and Redux: runs in seconds on a CPU.

    The DEM and S* start from seeded initial weights (``seed``) and the reference LoRA from
    zero (no effect until trained).
    """
    import torch

    from smg_sdk import FluxBackend, TINY_DEFAULTS, tiny_flux_path

    config = AlignGenConfig.from_options(options)
    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    backend.source = None  # small enough to save whole
    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_aligngen(backend, config, defaults)


def aligngen(path: str, dtype: str | None = None, device: str | None = None, *, offload: str | None = None,
             torch_dtype: str | None = None, max_sequence_length: int = 512, **options: Any) -> SubjectPipeline:
    """AlignGen on a local FLUX.1 folder (diffusers format); Redux from ``redux_path`` (FLUX.1-Redux-dev as
    downloaded), SigLIP from its ``image_encoder/`` or from ``siglip_path``.

    What a user downloads: ``black-forest-labs/FLUX.1-dev`` (``model_index.json``, ``transformer/``,
    ``vae/``, ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``, ``tokenizer_2/``,
    ``scheduler/``) and ``black-forest-labs/FLUX.1-Redux-dev`` (``model_index.json``,
    ``image_encoder/``, ``feature_extractor/``, ``image_embedder/``). ``dtype`` (``bf16``
    default, ``fp16``, ``fp32``; ``torch_dtype`` is its older name, also as ``"bfloat16"``) is
    the FLUX models'; SigLIP and Redux load in float32 (small; they cast their inputs).
    ``device`` and ``offload`` (None, ``"model"``, ``"group"``) as :meth:`SubjectPipeline.place`.
    Other keywords are :class:`AlignGenConfig` fields. Defaults follow the paper: 28 steps,
    guidance 3.5, 512 x 512. Raises ``ConditionError`` without ``redux_path`` or with both
    ``dtype`` and ``torch_dtype``, ``RequestError`` for an unknown dtype, ``PlacementError``
    for an unknown offload.
    """
    from smg_sdk import FluxBackend, parse_dtype

    paths = {k: str(v) for k, v in options.items() if k in ("redux_path", "siglip_path") and v is not None}
    config = AlignGenConfig.from_options({**options, **paths})
    if config.redux_path is None:
        raise ConditionError("The aligngen preset needs redux_path=... (a FLUX.1-Redux-dev folder as downloaded, or a "
                             "ReduxImageEncoder folder together with siglip_path=...).")
    if dtype is not None and torch_dtype is not None:
        raise ConditionError("aligngen: pass dtype= or torch_dtype= (its older name), not both.")
    dtype = dtype or torch_dtype or "bf16"
    backend = FluxBackend.from_pretrained(path, dtype=parse_dtype(dtype), max_sequence_length=max_sequence_length)
    defaults = {"height": 512, "width": 512, "num_inference_steps": 28, "guidance_scale": 3.5}
    return build_aligngen(backend, config, defaults).place(device, None, offload)
