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

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...pipeline import SubjectPipeline


PARTS: tuple[tuple[str, str, str], ...] = (("aligngen", "aligngen", "aligngen-tiny"),
                                           ("squeeze", "squeeze-mllm", "squeeze-tiny"),
                                           ("music", "music", "music-tiny"))
"""(switch, plugin, preset): the plugin whose preset each switched-on method is built from."""

METHOD_OPTIONS: dict[str, str] = {"aggregator": "squeeze", "trained_planner": "music", "layout_mode": "music"}
"""Each method option and the switch it belongs to: with that switch off it has nothing to act on."""


def composed_tiny_preset(aligngen: bool = True, squeeze: bool = True, music: bool = True,
                         aggregator: str | None = None, trained_planner: bool | None = None,
                         layout_mode: str | None = None) -> "SubjectPipeline":
    """The tiny composition (see the module docstring); needs the aligngen, squeeze-mllm and music
    plugins for the methods switched on.

    ``aggregator``: the Squeeze aggregator whose shipped weights are used (``dla`` when not given;
    ``lap``, ``last-layer``, ``fixed-layers``); ``trained_planner``: MUSIC's shipped trained planner
    instead of the heuristic fallback (false when not given); ``layout_mode``: the ``music-layout``
    rule's mode (``hard`` when not given, or ``soft``). Raises :class:`~smg_sdk.errors.ConfigError`
    when a switch is not a bool, every method is switched off (that is the ``tiny`` preset), or a
    method option is given with its method switched off (``aggregator`` needs ``squeeze``;
    ``trained_planner`` and ``layout_mode`` need ``music``); :class:`~smg_sdk.errors.RegistryError`
    naming the plugin, and how to load it, when a switched-on method's plugin is not loaded.
    """
    from ...pipeline import SubjectPipeline

    switches = {"aligngen": aligngen, "squeeze": squeeze, "music": music}
    check_options(switches, {"aggregator": aggregator, "trained_planner": trained_planner, "layout_mode": layout_mode})
    check_plugins(switches)
    base = SubjectPipeline.from_preset("aligngen-tiny" if aligngen else "tiny")
    encoders, aggregators, rules = list(base.encoders), list(base.aggregators), list(base.rules)
    schedule, planner, verifier = base.schedule, None, None
    if squeeze:
        parts = SubjectPipeline.from_preset("squeeze-tiny", aggregator=aggregator or "dla")
        encoders += [e for e in parts.encoders if getattr(e, "smg_name", None) == "squeeze-mllm"]
        aggregators = [*parts.aggregators, *aggregators]
        schedule = parts.schedule
    if music:
        parts = SubjectPipeline.from_preset("music-tiny", trained_planner=bool(trained_planner),
                                            layout_mode=layout_mode or "hard")
        rules += [r for r in parts.rules if getattr(r, "smg_name", None) == "music-layout"]
        planner, verifier = parts.planner, parts.verifier
    return SubjectPipeline(base.backend, encoders, aggregators, rules, schedule, planner, verifier,
                           defaults=_defaults(base.defaults, squeeze))


def check_options(switches: dict[str, Any], options: dict[str, Any]) -> None:
    """:class:`~smg_sdk.errors.ConfigError` for a switch that is not a bool, all switches off, a
    method option of the wrong type, or one given (not None) while its method is switched off."""
    from ...errors import ConfigError

    flags = dict(switches)
    if options["trained_planner"] is not None:
        flags["trained_planner"] = options["trained_planner"]
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"composed-tiny {name} must be true or false, got {value!r}.")
    if not any(switches.values()):
        raise ConfigError("composed-tiny with aligngen, squeeze and music all false is the 'tiny' preset; "
                          "use that, or switch a method on.")
    for name in ("aggregator", "layout_mode"):
        if options[name] is not None and not isinstance(options[name], str):
            raise ConfigError(f"composed-tiny {name} must be a name (a string), got {options[name]!r}.")
    for name, switch in METHOD_OPTIONS.items():
        if options[name] is not None and not switches[switch]:
            raise ConfigError(f"composed-tiny {name}={options[name]!r} configures {switch}, which {switch}=False "
                              f"leaves out; drop {name}, or switch {switch} on.")


def check_plugins(switches: dict[str, bool]) -> None:
    """:class:`~smg_sdk.errors.RegistryError` naming every switched-on method whose plugin's tiny
    preset is not registered, why (``SMG_LOAD_PLUGINS``, autoload off, not installed) and what to do."""
    from ...errors import RegistryError
    from ...plugins.manager import DISABLE_AUTOLOAD_ENV, LOAD_PLUGINS_ENV, autoload_disabled, get_registry, selected_plugins

    registry = get_registry()
    missing = [(switch, plugin, preset) for switch, plugin, preset in PARTS
               if switches[switch] and ("preset", preset) not in registry]
    if not missing:
        return
    plugins = ", ".join(f"'{plugin}' (for {switch}=True: its preset {preset!r})" for switch, plugin, preset in missing)
    it = "them" if len(missing) > 1 else "it"
    selected = selected_plugins()
    if selected is not None:
        wanted = ",".join(sorted(selected | {plugin for _, plugin, _ in missing}))
        why = (f"{LOAD_PLUGINS_ENV}={os.environ.get(LOAD_PLUGINS_ENV, '')!r} leaves {it} out: set "
               f"{LOAD_PLUGINS_ENV}={wanted}, or unset {LOAD_PLUGINS_ENV}")
    elif autoload_disabled():
        why = f"{DISABLE_AUTOLOAD_ENV} turns plugin loading off: unset it"
    else:
        why = f"{it} did not load (`smg plugins` shows why) or {'are' if len(missing) > 1 else 'is'} not installed"
    off = " and ".join(f"{switch}=False" for switch, _, _ in missing)
    instead = (f"or pass {off} to compose without {it}" if len(missing) < sum(switches.values())
               else "or use the 'tiny' preset, which needs no plugin")
    raise RegistryError(f"composed-tiny needs the plugin{'s' if len(missing) > 1 else ''} {plugins}, not loaded "
                        f"here. {why}; {instead}.")


def _defaults(base: dict[str, Any], squeeze: bool) -> dict[str, Any]:
    """The base preset's defaults; without the ``tiny`` preset's true CFG (``TINY_GUIDANCE``) when Squeeze's
    MLLM stream is in (its conditioning never saw the empty prompt, as ``squeeze-tiny`` says)."""
    from ...presets.tiny import TINY_GUIDANCE

    if not squeeze:
        return dict(base)
    return {k: v for k, v in base.items() if k not in TINY_GUIDANCE}


__all__ = ["METHOD_OPTIONS", "PARTS", "check_options", "check_plugins", "composed_tiny_preset"]
