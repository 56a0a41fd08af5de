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


def tiny_preset(reference_mode: str = "concat", position: str = "kontext") -> "SubjectPipeline":
    """The embedded tiny FLUX: text + VAE references, runs in seconds on a CPU."""
    from .backends.flux import FluxBackend
    from .encoders import FluxTextEncoder, VAEReferenceEncoder
    from .pipeline import SubjectPipeline
    from .plugins.manager import get_registry
    from .presets.tiny import TINY_DEFAULTS, tiny_flux_path

    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    backend.source = None  # small enough to save whole, so a saved pipeline never depends on the install
    registry = get_registry()
    defaults = {k: v for k, v in TINY_DEFAULTS.items() if k != "max_sequence_length"}
    return SubjectPipeline(
        backend,
        encoders=[
            registry.build("encoder", "flux-text"),
            registry.build("encoder", "vae-reference", mode=reference_mode, position=position),
        ],
        schedule=registry.build("schedule", "constant"),
        defaults=defaults,
    )


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
