"""``composed-tiny``: AlignGen + Squeeze-MLLM + MUSIC on the embedded tiny FLUX, from their tiny presets.

The real-size ``composed`` preset (:func:`.real_presets.composed_preset`) assembles the three
methods around one FLUX.1 folder; this is the same assembly around the tiny FLUX, built only
from registered preset names (``aligngen-tiny``, ``squeeze-tiny``, ``music-tiny``, ``tiny``), so
each method keeps the SubjectWorld-trained weights its own plugin ships and the core imports no
plugin. Each method can be switched off, which gives the leave-one-out rows of the claims table:

- ``aligngen``: the base is ``aligngen-tiny`` (S* + DEM text, Redux tokens, its reference LoRA,
  the selective mask), else the ``tiny`` preset (T5 + VAE references with the subject LoRA, and
  its true CFG);
- ``squeeze``: adds ``squeeze-tiny``'s MLLM encoder and its trained aggregator (a second
  text-side stream beside T5) and the multi-stage schedule; Squeeze's own identity LoRA is not
  used, because the base already routes VAE references through its own LoRA;
- ``music``: adds ``music-tiny``'s planner, ``music-layout`` rule and verifier.

The methods were trained separately, each on the frozen tiny base; nothing here was trained
together, which is what the claims table's "composed" row measures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...pipeline import SubjectPipeline


def composed_tiny_preset(aligngen: bool = True, squeeze: bool = True, music: bool = True, aggregator: str = "dla",
                         trained_planner: bool = False, layout_mode: str = "hard") -> "SubjectPipeline":
    """The tiny composition (see the module docstring); needs the aligngen, squeeze_mllm and music
    plugins for the methods switched on (:class:`~smg_sdk.errors.RegistryError` names a missing one).

    ``aggregator``: the Squeeze aggregator whose shipped weights are used (``dla`` default);
    ``trained_planner``: MUSIC's shipped trained planner instead of the heuristic fallback;
    ``layout_mode``: the ``music-layout`` rule's mode. Raises :class:`~smg_sdk.errors.ConfigError`
    when a switch is not a bool or every method is switched off (that is the ``tiny`` preset).
    """
    from ...errors import ConfigError
    from ...pipeline import SubjectPipeline

    switches = {"aligngen": aligngen, "squeeze": squeeze, "music": music, "trained_planner": trained_planner}
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise ConfigError(f"composed-tiny {name} must be true or false, got {value!r}.")
    if not (aligngen or squeeze or music):
        raise ConfigError("composed-tiny with aligngen, squeeze and music all false is the 'tiny' preset; "
                          "use that, or switch a method on.")
    base = SubjectPipeline.from_preset("aligngen-tiny" if aligngen else "tiny")
    encoders, aggregators, rules = list(base.encoders), list(base.aggregators), list(base.rules)
    schedule, planner, verifier = base.schedule, None, None
    if squeeze:
        parts = SubjectPipeline.from_preset("squeeze-tiny", aggregator=aggregator)
        encoders += [e for e in parts.encoders if getattr(e, "smg_name", None) == "squeeze-mllm"]
        aggregators = [*parts.aggregators, *aggregators]
        schedule = parts.schedule
    if music:
        parts = SubjectPipeline.from_preset("music-tiny", trained_planner=trained_planner, layout_mode=layout_mode)
        rules += [r for r in parts.rules if getattr(r, "smg_name", None) == "music-layout"]
        planner, verifier = parts.planner, parts.verifier
    return SubjectPipeline(base.backend, encoders, aggregators, rules, schedule, planner, verifier,
                           defaults=_defaults(base.defaults, squeeze))


def _defaults(base: dict[str, Any], squeeze: bool) -> dict[str, Any]:
    """The base preset's defaults; without true CFG when Squeeze's MLLM stream is in (its conditioning
    never saw the empty prompt, as ``squeeze-tiny`` says)."""
    if not squeeze:
        return dict(base)
    return {k: v for k, v in base.items() if k not in ("true_cfg_scale", "negative_prompt", "negative_references")}


__all__ = ["composed_tiny_preset"]
