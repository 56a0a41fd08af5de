"""Composing AlignGen: ``aligngen-tiny`` (the embedded tiny FLUX) and ``aligngen`` (local FLUX.1).

An AlignGen pipeline is::

    encoders     aligngen-text (T5 with S*, CLIP pooled), redux (raw image tokens),
                 vae-reference (concat, omini positions, LoRA adapter on reference tokens only)
    aggregators  dem (rewrites S* from the Redux tokens, consumes them)
    rules        aligngen-mask (selective cross-modal mask), isolate-references
    backend      FLUX with a rank-16 stream adapter for the reference tokens

Every component is built by registered name, so the pipeline saves and reloads by name.

Ablations (:class:`AlignGenConfig`): ``sstar_dem=False`` replaces ``aligngen-text`` by the core's
``flux-text`` (plain T5 + CLIP pooled) and drops Redux and the DEM, so only the reference LoRA
is AlignGen's; ``mask=False`` drops the ``aligngen-mask`` rule. ``aligngen-tiny`` loads a
trained run's weights (:mod:`.weights`) with ``weights=DIR``, else the variant's folder shipped
in ``weights/`` beside this module when there is one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
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
    sstar_dem: bool = True
    """False: the ablation without S* and the DEM (``flux-text`` instead of ``aligngen-text``, no
    Redux, no DEM); the reference LoRA, the references and the rules stay."""
    mask: bool = True
    """False: the ablation without the selective cross-modal mask (no ``aligngen-mask`` rule)."""

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AlignGenConfig":
        """The config of preset keyword options; :class:`ConditionError` for an unknown one or a non-bool switch."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConditionError(f"Unknown AlignGen option(s) {unknown}; known options: {sorted(known)}.")
        for name in ("sstar_dem", "mask"):
            if name in options and not isinstance(options[name], bool):
                raise ConditionError(f"AlignGen option {name} must be true or false, got {options[name]!r}.")
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
    if config.sstar_dem:
        encoders = [
            registry.build("encoder", "aligngen-text", stream_name=config.stream, marker=config.marker,
                           t5_dim=int(backend.text_encoder_2.config.d_model),
                           clip_dim=int(backend.text_encoder.config.hidden_size), clip_token=config.clip_token,
                           init_word=config.init_word),
            registry.build("encoder", "redux", siglip_path=config.siglip_path, redux_path=config.redux_path),
        ]
        aggregators = [
            registry.build("aggregator", "dem", width=width, heads=dem_heads(width, config.dem_heads),
                           mlp_ratio=config.dem_mlp_ratio, stream=config.stream, write_concepts=config.write_concepts),
        ]
    else:  # the ablation: plain FLUX text (its class-word tokens are what the mask exempts), no Redux, no DEM
        encoders, aggregators = [registry.build("encoder", "flux-text", stream_name=config.stream)], []
    encoders.append(registry.build("encoder", "vae-reference", mode=config.reference_mode, position=config.position,
                                   adapter=config.adapter, independent=cached))
    rules = []
    if config.mask:
        rules.append(registry.build("rule", "aligngen-mask", symmetric=config.symmetric,
                                    bind_subjects=config.bind_subjects))
    if config.isolate_references:
        rules.append(registry.build("rule", "isolate-references"))
    return SubjectPipeline(backend, encoders, aggregators, rules, schedule=registry.build("schedule", "constant"),
                           defaults=defaults)


def aligngen_tiny(seed: int = 0, weights: str | None = None, flux: str | None = None, trained: bool = True,
                  **options: Any) -> SubjectPipeline:
    """AlignGen on the embedded tiny FLUX, SigLIP and Redux: runs in seconds on a CPU.

    ``weights``: a folder of trained weights (the ``OUT/weights`` of ``smg train subjectworld
    --recipe aligngen``; layout in :mod:`.weights`); every file of the variant must be there, else
    :class:`ConditionError` naming the missing ones. ``sstar_dem`` and ``mask`` not given are the
    run's (recorded in its ``aligngen.json``); an ``sstar_dem`` other than the run's is refused,
    ``mask`` may differ (the mask removed at sampling only). Without ``weights``, the variant's
    folder shipped in ``weights/<variant>/`` beside this module is used when it exists, else the
    DEM and S* start from seeded initial weights (``seed``) and the reference LoRA from zero (no
    effect until trained). ``trained=False``: those seeded initial weights even where trained ones
    ship (the random-weight version of the method; not with ``weights``). ``flux``: a tiny FLUX
    folder instead of the embedded one (the base a run trained on). Other options are
    :class:`AlignGenConfig` fields.
    """
    from .weights import VARIANT_FILE, WEIGHTS, read_variant, variant_name

    if not isinstance(trained, bool):
        raise ConditionError(f"aligngen-tiny trained must be true or false, got {trained!r}.")
    if not trained and weights is not None:
        raise ConditionError("aligngen-tiny: trained=False starts from seeded weights, so it takes no weights=DIR; "
                             "pass one or the other.")
    if weights is not None and (Path(weights) / VARIANT_FILE).is_file():  # else check_weights names what is missing
        options = {**read_variant(weights), **options}
    config = AlignGenConfig.from_options(options)
    if trained and weights is None and (WEIGHTS / variant_name(config.sstar_dem, config.mask)).is_dir():
        weights = str(WEIGHTS / variant_name(config.sstar_dem, config.mask))
    return tiny_pipeline(config, weights, flux, seed)


def tiny_pipeline(config: AlignGenConfig, weights: str | None = None, flux: str | None = None,
                  seed: int = 0) -> SubjectPipeline:
    """``config`` on the tiny FLUX (``flux``, default the embedded one) with the weights in folder
    ``weights`` (None: seeded initial S* and DEM, zero LoRA; nothing shipped is looked up)."""
    import torch

    from smg_sdk import FluxBackend, TINY_DEFAULTS, tiny_flux_path

    from .weights import check_weights, load_sstar_and_dem

    files = check_weights(weights, config.sstar_dem, config.adapter) if weights is not None else None
    backend = FluxBackend.from_pretrained(flux or tiny_flux_path(),
                                          max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    backend.source = None  # small enough to save whole
    if files is not None:
        backend.load_stream_adapter(config.adapter, str(files["lora"]))
    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        pipe = build_aligngen(backend, config, defaults)
    if files is not None:
        load_sstar_and_dem(pipe, files)
    return pipe


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
