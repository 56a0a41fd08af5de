"""Squeeze-MLLM presets: ``squeeze-tiny`` (embedded tiny FLUX + tiny Qwen2.5-VL) and ``squeeze`` (local models).

Both compose: CLIP pooled text (no T5: the MLLM replaces it) + the ``squeeze-mllm`` encoder
(instruction and references read jointly) + VAE identity references with the identity LoRA on
the reference tokens; the aggregator (DLA by default) turns the MLLM's layers into the
text-side stream; the multi-stage schedule.

``squeeze-tiny``: the trained weights (aggregator, identity LoRA) are read from the folder of
the ``weights`` option (a ``smg train subjectworld --recipe squeeze`` run's ``OUT/weights``),
else from ``weights/<aggregator>/`` beside this file (a run's ``OUT/weights`` copied as it is)
when present; ``trained=False``, or an aggregator with no shipped folder, starts the components
from a fixed seed. Training new weights is therefore a data change, not a code change.

``squeeze``: what a user downloads is ``black-forest-labs/FLUX.1-dev`` (diffusers format:
``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``text_encoder_2/``, ``tokenizer_2/``, ``scheduler/``) and ``Qwen/Qwen2.5-VL-7B-Instruct``
(``config.json``, ``model-0000k-of-00005.safetensors`` + ``model.safetensors.index.json``,
``preprocessor_config.json``, ``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.json``...), plus the two files Squeeze training writes: the aggregator's weights
(``dla.safetensors``, a state dict of the aggregator) and the identity LoRA
(``pytorch_lora_weights.safetensors`` as ``FluxBackend.save_adapter`` writes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from smg_sdk import ConditionError, FluxBackend, SubjectPipeline, get_registry, parse_dtype

IDENTITY_ADAPTER = "squeeze-identity"
WEIGHTS = Path(__file__).parent / "weights"
SQUEEZE_DEFAULTS: dict[str, Any] = {"height": 512, "width": 512, "num_inference_steps": 28, "guidance_scale": 3.5}
"""FLUX.1-dev's 28 steps and guidance 3.5 at 512 px (the Squeeze paper's own settings are not recorded here)."""


def build_squeeze(backend: FluxBackend, mllm_encoder: Any, *, aggregator: str, lora_file: Path | None,
                  weights_file: Path | None, rank: int, reference_mode: str, position: str,
                  defaults: dict[str, Any], schedule: str = "multistage") -> SubjectPipeline:
    """The Squeeze composition around ``backend`` and a ``squeeze-mllm`` encoder.

    The identity LoRA loads from ``lora_file`` (else a new rank-``rank`` adapter, zero
    effect until trained) and the aggregator's state dict from ``weights_file`` (else its
    initial weights; both drawn under seed 0). ``schedule``: the registered denoising schedule
    (``multistage``, the paper's; ``constant`` weighs every stream 1 at every step, the
    ablation). Raises :class:`ConditionError` if a named file is missing.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    registry = get_registry()
    for what, file in (("identity_lora_path", lora_file), ("aggregator_path", weights_file)):
        if file is not None and not Path(file).is_file():
            raise ConditionError(f"squeeze {what}: no file at {str(file)!r}; pass the .safetensors file "
                                 "training wrote (for squeeze-tiny weights=DIR: the run's OUT/weights folder, "
                                 f"trained with this aggregator, {aggregator!r}).")
    encoders = [
        registry.build("encoder", "flux-text", t5=False),
        mllm_encoder,
        registry.build("encoder", "vae-reference", mode=reference_mode, position=position, adapter=IDENTITY_ADAPTER),
    ]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if lora_file is not None:
            backend.load_stream_adapter(IDENTITY_ADAPTER, str(lora_file))
        else:
            backend.add_stream_adapter(IDENTITY_ADAPTER, rank=rank)
        pooling = registry.build("aggregator", aggregator, num_layers=len(mllm_encoder.layers),
                                 in_dim=mllm_encoder.mllm.hidden_size, out_dim=backend.text_width)
    if weights_file is not None:
        try:
            pooling.load_state_dict(load_file(str(weights_file)))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ConditionError(f"squeeze aggregator_path {str(weights_file)!r} is not a {aggregator!r} aggregator's "
                                 f"safetensors file ({exc}); pass the file squeeze training wrote.") from None
    return SubjectPipeline(backend, encoders, [pooling], schedule=registry.build("schedule", schedule),
                           defaults=defaults)


def _shipped(path: Path) -> Path | None:
    return path if path.is_file() else None


def shipped_weights(aggregator: str) -> Path:
    """The folder ``squeeze-tiny`` reads ``aggregator``'s shipped weights from: ``weights/<aggregator>/``."""
    return WEIGHTS / aggregator


def weight_files(folder: str | Path, aggregator: str) -> tuple[Path, Path]:
    """The files a Squeeze training run writes into its ``weights`` folder (and ``weights/`` beside
    this module holds): ``<aggregator>.safetensors`` and ``squeeze-identity/pytorch_lora_weights.safetensors``."""
    folder = Path(folder)
    return folder / f"{aggregator}.safetensors", folder / IDENTITY_ADAPTER / "pytorch_lora_weights.safetensors"


def tiny_backend(flux: str | None = None) -> tuple[FluxBackend, dict[str, Any]]:
    """The tiny FLUX backend and its defaults: the embedded ``tiny`` preset's, or a FLUX folder
    ``flux`` (e.g. a ``smg train subjectworld --recipe base`` run's ``OUT/flux``) at the same settings.

    The defaults are ``TINY_DEFAULTS`` without the ``tiny`` preset's true CFG: Squeeze's MLLM
    conditioning was never trained with an empty prompt, so guidance against one means nothing."""
    from smg_sdk import TINY_DEFAULTS

    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    if flux is None:
        return SubjectPipeline.from_preset("tiny").backend, defaults
    return FluxBackend.from_pretrained(flux, max_sequence_length=TINY_DEFAULTS["max_sequence_length"]), defaults


def squeeze_tiny(reference_mode: str = "cached", position: str = "omini", aggregator: str = "dla",
                 layer_stride: int = 3, rank: int = 4, image_size: int = 64,
                 schedule: str = "multistage", weights: str | None = None, flux: str | None = None,
                 trained: bool = True) -> SubjectPipeline:
    """Squeeze on the embedded tiny FLUX and tiny Qwen2.5-VL: runs in seconds on a CPU.

    ``aggregator``: ``dla`` (default), ``lap``, ``last-layer`` or ``fixed-layers``;
    ``schedule``: ``multistage`` (default) or ``constant`` (see :func:`build_squeeze`).
    ``weights``: a folder with the trained ``<aggregator>.safetensors`` and identity LoRA
    (``squeeze-identity/pytorch_lora_weights.safetensors``), e.g. the ``OUT/weights`` of
    ``smg train subjectworld --recipe squeeze``; both must be there (else
    :class:`~smg_sdk.ConditionError`). Without it, the files shipped in ``weights/<aggregator>/``
    beside this module are used when present, else seeded initial weights. ``trained=False``:
    the seeded initial weights even where trained ones ship (the random-weight version of the
    method; not with ``weights``). ``flux``: a tiny FLUX folder instead of the embedded one (the
    base the run trained on).
    """
    if not isinstance(trained, bool):
        raise ConditionError(f"squeeze-tiny trained must be true or false, got {trained!r}.")
    if not trained and weights is not None:
        raise ConditionError("squeeze-tiny: trained=False starts from seeded weights, so it takes no weights=DIR; "
                             "pass one or the other.")
    backend, defaults = tiny_backend(flux)
    mllm_encoder = get_registry().build("encoder", "squeeze-mllm", model="tiny", layer_stride=layer_stride,
                                        image_size=image_size)
    weights_file, lora_file = weight_files(weights if weights is not None else shipped_weights(aggregator), aggregator)
    if weights is None:
        weights_file, lora_file = (_shipped(weights_file), _shipped(lora_file)) if trained else (None, None)
    return build_squeeze(backend, mllm_encoder, aggregator=aggregator, lora_file=lora_file,
                         weights_file=weights_file, rank=rank, reference_mode=reference_mode, position=position,
                         defaults=defaults, schedule=schedule)


def squeeze(path: str, mllm_path: str, aggregator_path: str | None = None, identity_lora_path: str | None = None, *,
            aggregator: str = "dla", layer_stride: int = 3, image_size: int = 448, rank: int = 16,
            reference_mode: str = "cached", position: str = "omini", dtype: str | None = "bf16",
            device: str | None = None, offload: str | None = None, max_sequence_length: int = 512,
            trust_remote_code: bool = False) -> SubjectPipeline:
    """Squeeze-MLLM on local FLUX.1 and Qwen2.5-VL folders (see the module docstring for the downloads).

    ``path``: a diffusers-format FLUX.1 folder; ``mllm_path``: a Qwen2.5-VL-class folder;
    ``aggregator_path``: the trained ``aggregator``'s weights (``dla``, ``lap``, ...; without
    them the aggregator is untrained); ``identity_lora_path``: the identity LoRA file.
    ``dtype`` (``bf16`` default, ``fp16``, ``fp32``) is the FLUX models' and the MLLM's;
    ``device`` and ``offload`` (None, ``"model"``, ``"group"``) as
    :meth:`SubjectPipeline.place`. Without offload the MLLM loads straight onto ``device``.
    The aggregator keeps its weights' dtype (float32) and returns the backend's.
    Raises :class:`~smg_sdk.RequestError` for an unknown dtype and
    :class:`~smg_sdk.PlacementError` for an unknown offload.
    """
    torch_dtype = parse_dtype(dtype)
    backend = FluxBackend.from_pretrained(path, dtype=torch_dtype, max_sequence_length=max_sequence_length)
    mllm_encoder = get_registry().build(
        "encoder", "squeeze-mllm", model=str(mllm_path), layer_stride=layer_stride, image_size=image_size,
        trust_remote_code=trust_remote_code, dtype=str(torch_dtype).removeprefix("torch.") if torch_dtype else None,
        device=device if offload in (None, "none") else None)
    pipe = build_squeeze(backend, mllm_encoder, aggregator=aggregator,
                         lora_file=Path(identity_lora_path) if identity_lora_path else None,
                         weights_file=Path(aggregator_path) if aggregator_path else None, rank=rank,
                         reference_mode=reference_mode, position=position, defaults=dict(SQUEEZE_DEFAULTS))
    return pipe.place(device, None, offload)
