"""The registry of named component factories that plugins fill in.

Components are referred to by ``(kind, name)`` in presets and saved pipeline manifests,
so names must be stable, unique per kind and traceable to the plugin that provides them;
this module enforces all three.
"""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..configurable import CONFIG_ATTR, NAME_ATTR, captured_config
from ..errors import ConfigError, PluginError, RegistryError, SMGError

KINDS: tuple[str, ...] = (
    "encoder", "aggregator", "rule", "schedule", "planner", "verifier", "judge", "backend", "preset", "recipe",
)
"""Every component kind, in the order ``smg plugins`` shows them."""

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
"""Valid component names: lower-case so names in JSON manifests and CLIs are unambiguous."""

DIRECT_OWNER = "<direct>"
"""Owner recorded for names added to a registry outside any plugin (e.g. in a unit test)."""

Factory = Callable[..., Any]


def is_valid_name(name: object) -> bool:
    """Whether ``name`` may be used as a component name."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


class Registry:
    """Named factories per component kind, each attributed to the plugin that added it.

    The plugin manager sets :attr:`current_plugin` (through :meth:`registering`) around
    each plugin's ``smg_register`` call, so plugins never pass their own name and cannot
    claim someone else's.
    """

    def __init__(self) -> None:
        self._factories: dict[str, dict[str, Factory]] = {kind: {} for kind in KINDS}
        self._owners: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self.current_plugin: str | None = None
        """Name of the plugin whose ``smg_register`` is running, or None."""

    # -- registration -------------------------------------------------------------------

    @contextmanager
    def registering(self, plugin: str) -> Iterator["Registry"]:
        """Attribute every name added inside the ``with`` block to ``plugin``."""
        previous, self.current_plugin = self.current_plugin, plugin
        try:
            yield self
        finally:
            self.current_plugin = previous

    def _add(self, kind: str, name: str, factory: Factory) -> None:
        owner = self.current_plugin or DIRECT_OWNER
        if not is_valid_name(name):
            raise PluginError(
                f"plugin {owner!r} tried to register {kind} name {name!r}, which is not a valid "
                f"name; use a non-empty string of lower-case letters, digits, '_', '.' and '-' "
                f"starting with a letter or digit (e.g. 'my-{kind}')."
            )
        if not callable(factory):
            raise PluginError(
                f"plugin {owner!r} registered {kind} {name!r} with a {type(factory).__name__}, "
                f"not a callable; pass a class or function that builds the {kind}."
            )
        first = self._owners[kind].get(name)
        if first is not None:
            if first == owner:
                raise PluginError(f"plugin {owner!r} registered {kind} {name!r} twice; register each name once.")
            raise PluginError(
                f"{kind} {name!r} is registered by both plugin {first!r} and plugin {owner!r}; "
                f"uninstall or rename one of them (see `smg plugins`)."
            )
        self._factories[kind][name] = factory
        self._owners[kind][name] = owner

    def add_encoder(self, name: str, factory: Factory) -> None:
        """Register a condition encoder; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.ConditionEncoder`."""
        self._add("encoder", name, factory)

    def add_aggregator(self, name: str, factory: Factory) -> None:
        """Register an aggregator; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.Aggregator`."""
        self._add("aggregator", name, factory)

    def add_rule(self, name: str, factory: Factory) -> None:
        """Register an attention rule; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.AttentionRule`."""
        self._add("rule", name, factory)

    def add_schedule(self, name: str, factory: Factory) -> None:
        """Register a denoising schedule; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.DenoisingSchedule`."""
        self._add("schedule", name, factory)

    def add_planner(self, name: str, factory: Factory) -> None:
        """Register a planner; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.Planner`."""
        self._add("planner", name, factory)

    def add_verifier(self, name: str, factory: Factory) -> None:
        """Register a verifier; ``factory(**config)`` returns a
        :class:`smg_sdk.interfaces.Verifier`."""
        self._add("verifier", name, factory)

    def add_judge(self, name: str, factory: Factory) -> None:
        """Register a scene judge; ``factory(**options)`` returns a :class:`smg_sdk.interfaces.SceneJudge`.

        Verifiers such as ``scene-judge`` refer to judges by these names, so a saved pipeline
        names its judge and never a module to import.
        """
        self._add("judge", name, factory)

    def add_backend(self, name: str, factory: Factory) -> None:
        """Register a diffusion backend; ``factory(**config)`` returns a backend object
        (a :class:`smg_sdk.backends.base.Backend`)."""
        self._add("backend", name, factory)

    def add_preset(self, name: str, factory: Factory) -> None:
        """Register a preset; ``factory(**options)`` returns a ready
        :class:`smg_sdk.SubjectPipeline` (used by ``SubjectPipeline.from_preset``)."""
        self._add("preset", name, factory)

    def add_recipe(self, name: str, factory: Factory) -> None:
        """Register a SubjectWorld training recipe, run by ``smg train subjectworld --recipe NAME``:
        ``factory(options, log, **recipe_options)`` trains into ``options.out`` and returns what it
        wrote (see :mod:`smg_sdk.training.recipes`). Not built with :meth:`build`."""
        self._add("recipe", name, factory)

    def forget(self, plugin: str) -> None:
        """Remove every name ``plugin`` registered (rollback of a plugin that failed)."""
        for kind in KINDS:
            for name in [n for n, owner in self._owners[kind].items() if owner == plugin]:
                del self._owners[kind][name]
                del self._factories[kind][name]

    # -- lookup -------------------------------------------------------------------------

    def _kind(self, kind: str) -> dict[str, Factory]:
        try:
            return self._factories[kind]
        except (KeyError, TypeError):
            raise RegistryError(f"unknown component kind {kind!r}; known kinds: {', '.join(KINDS)}.") from None

    def get(self, kind: str, name: str) -> Factory:
        """The factory registered as ``name`` for ``kind``."""
        factories = self._kind(kind)
        try:
            return factories[name]
        except (KeyError, TypeError):
            pass
        known = sorted(factories)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(repr(n) for n in known) if known else "none"
        raise RegistryError(
            f"no {kind} named {name!r} is registered.{hint} Known {kind}s: {listing}. "
            f"Run `smg plugins` to see installed plugins and what they register."
        )

    def names(self, kind: str) -> list[str]:
        """Registered names of ``kind``, sorted."""
        return sorted(self._kind(kind))

    def names_of(self, kind: str, factory: Factory) -> list[str]:
        """Names of ``kind`` registered with exactly ``factory`` (a class, usually), sorted."""
        return sorted(n for n, f in self._kind(kind).items() if f is factory)

    def owner(self, kind: str, name: str) -> str:
        """Name of the plugin that registered ``name`` for ``kind``."""
        self.get(kind, name)  # raises the helpful RegistryError
        return self._owners[kind][name]

    def components(self, plugin: str) -> dict[str, list[str]]:
        """What ``plugin`` registered: kind -> sorted names, kinds with no names left out."""
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            names = sorted(n for n, owner in self._owners[kind].items() if owner == plugin)
            if names:
                out[kind] = names
        return out

    def __contains__(self, key: object) -> bool:
        """``("aggregator", "mean") in registry``."""
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        kind, name = key
        return isinstance(kind, str) and kind in self._factories and name in self._factories[kind]

    # -- building -----------------------------------------------------------------------

    def _check_options(self, kind: str, name: str, factory: Factory, config: dict[str, Any]) -> None:
        """A misspelt or missing option is a one-line RegistryError naming it, not a TypeError."""
        import inspect

        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            return
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        required = [p.name for p in named if p.default is inspect.Parameter.empty and p.name not in config]
        if required:
            raise RegistryError(
                f"{kind} {name!r} needs the option(s) {', '.join(required)}, which have no default; pass them, e.g. "
                f"({name!r}, {{{required[0]!r}: ...}}), or use a preset that builds it."
            )
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return
        accepted = [p.name for p in named]
        unknown = sorted(set(config) - set(accepted))
        if unknown:
            raise RegistryError(
                f"{kind} {name!r} has no option {unknown[0]!r}; its options are: {', '.join(accepted) or '(none)'}."
            )

    def build(self, kind: str, name: str, **config: Any) -> Any:
        """Call the factory with ``config`` and record ``smg_name``/``smg_config`` on the result.

        The recorded name and config are what a saved pipeline's manifest stores, so the
        same component can be rebuilt later with ``build(kind, smg_name, **smg_config)``. A
        component whose class is the factory and that captured its own options at
        construction (:mod:`smg_sdk.configurable`) keeps those; any other gets ``config``.
        """
        factory = self.get(kind, name)
        self._check_options(kind, name, factory, config)
        try:
            component = factory(**config)
        except SMGError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{kind} {name!r} could not be built with options {config!r}: {exc}") from exc
        try:
            setattr(component, NAME_ATTR, name)
            if not (type(component) is factory and captured_config(component) is not None):
                setattr(component, CONFIG_ATTR, dict(config))
        except (AttributeError, TypeError) as exc:
            raise PluginError(
                f"the factory of {kind} {name!r} (plugin {self._owners[kind][name]!r}) returned a "
                f"{type(component).__name__} that does not accept attributes ({exc}); the factory "
                f"must return an object that accepts attributes (smg_name, smg_config), e.g. an "
                f"instance of a regular class without __slots__."
            ) from exc
        return component

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={len(self._factories[kind])}" for kind in KINDS)
        return f"Registry({counts})"
