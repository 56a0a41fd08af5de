"""The FLUX backend's registrations: the ``flux`` backend, its encoders, the ``tiny`` preset and
the tiny FLUX's SubjectWorld recipes ``vae``, ``base``, ``reference-lora``.

The core's own plugin (:mod:`smg_sdk.builtin`) calls :func:`register` when it loads, so
these names are there whenever the registry is; nothing else in the core names a FLUX
module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ...pipeline import SubjectPipeline
    from ...plugins.registry import Registry
    from ...training.recipes import RecipeOptions


def flux_backend(path: str | None = None, *, manifest: dict | None = None, folder: str | None = None, **options: Any):
    """``flux`` backend: a diffusers-format folder, or a saved pipeline's backend entry."""
    from .backend import FluxBackend

    if manifest is not None:
        return FluxBackend.from_manifest(manifest, folder, **options)
    if path is None:
        from ...errors import ModelLoadError

        raise ModelLoadError("The flux backend needs path='/local/folder/of/FLUX.1-dev' (diffusers format).")
    return FluxBackend.from_pretrained(path, **options)


def tiny_pipeline(backend, reference_mode: str = "concat", position: str = "kontext",
                  adapter: str | None = None, reference_scale: float = 1.0) -> "SubjectPipeline":
    """The tiny preset's composition around ``backend``: T5/CLIP text + VAE references
    (``reference_mode``, ``position``, ``reference_scale``: compact references, see
    :class:`.encoders.VAEReferenceEncoder`) with the stream LoRA ``adapter`` on the reference tokens."""
    from ...pipeline import SubjectPipeline
    from ...plugins.manager import get_registry
    from ...presets.tiny import TINY_DEFAULTS

    registry = get_registry()
    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    compact = {"reference_scale": reference_scale} if reference_scale != 1 else {}  # the manifest records only a choice
    return SubjectPipeline(
        backend,
        encoders=[
            registry.build("encoder", "flux-text"),
            registry.build("encoder", "vae-reference", mode=reference_mode, position=position, adapter=adapter,
                           **compact),
        ],
        schedule=registry.build("schedule", "constant"),
        defaults=defaults,
    )


def tiny_preset(reference_mode: str = "concat", position: str = "kontext",
                reference_scale: float = 1.0) -> "SubjectPipeline":
    """The embedded tiny FLUX: text + VAE references, runs in seconds on a CPU.

    ``reference_scale=0.5`` (or ``0.25``) encodes compact references: a quarter (a sixteenth)
    of the tokens, positions scaled to the target grid.

    When the package ships a trained subject adapter (``presets/tiny/subject_lora/``), it is
    loaded as the stream LoRA ``subject`` and routed to the reference tokens only. Its defaults
    add :data:`~smg_sdk.presets.tiny.TINY_GUIDANCE` (true CFG 3 against the empty prompt, the
    negative without references); pass ``true_cfg_scale=1`` to a call to sample without it.
    """
    from ...presets.tiny import SUBJECT_ADAPTER, TINY_DEFAULTS, TINY_GUIDANCE, tiny_flux_path, tiny_subject_lora_path
    from .backend import FluxBackend

    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    backend.source = None  # small enough to save whole, so a saved pipeline never depends on the install
    lora = tiny_subject_lora_path()
    if lora is not None:
        backend.load_stream_adapter(SUBJECT_ADAPTER, lora)
    pipe = tiny_pipeline(backend, reference_mode, position, SUBJECT_ADAPTER if lora is not None else None,
                         reference_scale)
    pipe.defaults.update(TINY_GUIDANCE)
    return pipe


def register(registry: "Registry") -> None:
    """Add the FLUX backend, FLUX's text and VAE-reference encoders, its presets and its recipes."""
    from .composed import composed_tiny_preset
    from .encoders import FluxTextEncoder, VAEReferenceEncoder

    registry.add_backend("flux", flux_backend)
    registry.add_encoder("flux-text", FluxTextEncoder)
    registry.add_encoder("vae-reference", VAEReferenceEncoder)
    registry.add_preset("tiny", tiny_preset)
    registry.add_preset("reference-lora", reference_lora)
    registry.add_preset("omini", reference_lora)
    registry.add_preset("composed", composed)
    registry.add_preset("composed-tiny", composed_tiny_preset)
    registry.add_recipe("vae", vae_recipe)
    registry.add_recipe("base", base_recipe)
    registry.add_recipe("reference-lora", reference_lora_recipe)


def vae_recipe(options: "RecipeOptions", log: Callable[[str], None] = print) -> Path:
    """The tiny AutoencoderKL on SubjectWorld renders; writes OUT/vae/.

    See :func:`.recipes.run_vae`.
    """
    from .recipes import run_vae

    return run_vae(options, log)


def base_recipe(options: "RecipeOptions", log: Callable[[str], None] = print) -> Path:
    """Stage 0: the FLUX transformer + T5 on caption scenes; writes OUT/flux/.

    See :func:`.recipes.run_base`.
    """
    from .recipes import run_base

    return run_base(options, log)


def reference_lora_recipe(options: "RecipeOptions", log: Callable[[str], None] = print) -> Path:
    """Stage 1: the subject LoRA on VAE references, base frozen; writes OUT/adapter/.

    See :func:`.recipes.run_reference_lora`.
    """
    from .recipes import run_reference_lora

    return run_reference_lora(options, log)


def reference_lora(path: str, lora_path: str | None = None, **options: Any) -> "SubjectPipeline":
    """``reference-lora`` / ``omini``: FLUX.1 + a reference LoRA from local paths (see :mod:`.real_presets`)."""
    from .real_presets import reference_lora_preset

    return reference_lora_preset(path, lora_path, **options)


def composed(path: str, redux_path: str, mllm_path: str, clip_path: str, **options: Any) -> "SubjectPipeline":
    """``composed``: AlignGen + Squeeze-MLLM + MUSIC on one local FLUX.1 (see :mod:`.real_presets`)."""
    from .real_presets import composed_preset

    return composed_preset(path, redux_path, mllm_path, clip_path, **options)

