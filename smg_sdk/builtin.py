"""The core's own plugin: loaded first, through the same hook as every other plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plugins.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import SubjectPipeline
    from .plugins.registry import Registry


def flux_backend(path: str | None = None, *, manifest: dict | None = None, folder: str | None = None, **options: Any):
    """``flux`` backend: a diffusers-format folder, or a saved pipeline's backend entry."""
    from .backends.flux import FluxBackend

    if manifest is not None:
        return FluxBackend.from_manifest(manifest, folder, **options)
    if path is None:
        from .errors import ModelLoadError

        raise ModelLoadError("The flux backend needs path='/local/folder/of/FLUX.1-dev' (diffusers format).")
    return FluxBackend.from_pretrained(path, **options)


def tiny_pipeline(backend, reference_mode: str = "concat", position: str = "kontext",
                  adapter: str | None = None) -> "SubjectPipeline":
    """The tiny preset's composition around ``backend``: T5/CLIP text + VAE references
    (``reference_mode``, ``position``) with the stream LoRA ``adapter`` on the reference tokens."""
    from .pipeline import SubjectPipeline
    from .plugins.manager import get_registry
    from .presets.tiny import TINY_DEFAULTS

    registry = get_registry()
    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    return SubjectPipeline(
        backend,
        encoders=[
            registry.build("encoder", "flux-text"),
            registry.build("encoder", "vae-reference", mode=reference_mode, position=position, adapter=adapter),
        ],
        schedule=registry.build("schedule", "constant"),
        defaults=defaults,
    )


def tiny_preset(reference_mode: str = "concat", position: str = "kontext") -> "SubjectPipeline":
    """The embedded tiny FLUX: text + VAE references, runs in seconds on a CPU.

    When the package ships a trained subject adapter (``presets/tiny/subject_lora/``), it is
    loaded as the stream LoRA ``subject`` and routed to the reference tokens only.
    """
    from .backends.flux import FluxBackend
    from .presets.tiny import SUBJECT_ADAPTER, TINY_DEFAULTS, tiny_flux_path, tiny_subject_lora_path

    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    backend.source = None  # small enough to save whole, so a saved pipeline never depends on the install
    lora = tiny_subject_lora_path()
    if lora is not None:
        backend.load_stream_adapter(SUBJECT_ADAPTER, lora)
    return tiny_pipeline(backend, reference_mode, position, SUBJECT_ADAPTER if lora is not None else None)


@hookimpl
def smg_register(registry: "Registry") -> None:
    """Components the core itself provides."""
    from .attention.rules import BlockRule, IsolateReferencesRule, StreamBiasRule
    from .encoders import FluxTextEncoder, VAEReferenceEncoder
    from .eval.judge import SubjectWorldJudge
    from .schedules import ConstantSchedule

    registry.add_judge("subjectworld", SubjectWorldJudge)
    registry.add_backend("flux", flux_backend)
    registry.add_encoder("flux-text", FluxTextEncoder)
    registry.add_encoder("vae-reference", VAEReferenceEncoder)
    registry.add_rule("block", BlockRule)
    registry.add_rule("isolate-references", IsolateReferencesRule)
    registry.add_rule("stream-bias", StreamBiasRule)
    registry.add_schedule("constant", ConstantSchedule)
    registry.add_preset("tiny", tiny_preset)
