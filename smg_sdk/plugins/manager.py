"""Discovering, loading and listing plugins.

One process-wide plugin manager and registry are created lazily on first use, so importing
smg-sdk stays cheap and never imports third-party code. Loading is fault-isolated per
plugin: one broken plugin is reported (and warned about) but cannot stop the core or the
other plugins from loading. The same holds for the sub-commands plugins add to ``smg``
(:func:`add_plugin_commands`).

Which plugins load: the builtin one always; then every entry point of the ``smg_sdk``
group, unless ``SMG_LOAD_PLUGINS`` names the ones to load (``a,b``; empty: none) or
``SMG_DISABLE_PLUGIN_AUTOLOAD`` turns entry points off.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ..errors import PluginError
from . import hookspecs
from .registry import Registry

ENTRY_POINT_GROUP = "smg_sdk"
"""Entry-point group a distribution lists its plugin modules under."""

DISABLE_AUTOLOAD_ENV = "SMG_DISABLE_PLUGIN_AUTOLOAD"
"""Set to 1/true/yes to skip entry-point plugins (the builtin plugin still loads)."""

LOAD_PLUGINS_ENV = "SMG_LOAD_PLUGINS"
"""Comma-separated entry-point names (as ``smg plugins`` shows them): load only these plugins.

Empty: no entry-point plugin. Unset: all of them. It takes precedence over
``SMG_DISABLE_PLUGIN_AUTOLOAD`` (named plugins load even then). A name no installed plugin
has is warned about and listed as an error."""

BUILTIN_MODULE = "smg_sdk.builtin"

_TRUE = {"1", "true", "yes"}


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; it was skipped and everything else still loaded."""


@dataclass
class PluginInfo:
    """What ``smg plugins`` shows about one plugin."""

    name: str
    version: str | None
    source: str  # "builtin" | "entry point" | "manual" | "error"
    components: dict[str, list[str]] = field(default_factory=dict)  # kind -> names registered
    error: str | None = None  # "ExceptionType: message" when source == "error"


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
_infos: list[PluginInfo] = []
_loaded = False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def autoload_disabled() -> bool:
    """Whether ``SMG_DISABLE_PLUGIN_AUTOLOAD`` asks to skip entry-point plugins."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in _TRUE


def selected_plugins() -> set[str] | None:
    """The entry-point names ``SMG_LOAD_PLUGINS`` asks for, or None when it is not set."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager (created on first call, plugins not loaded yet)."""
    global _pm
    with _lock:
        if _pm is None:
            _pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            _pm.add_hookspecs(hookspecs)
        return _pm


def _registry_object() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def get_registry() -> Registry:
    """The process-wide registry, with the builtin and entry-point plugins loaded."""
    global _loaded
    with _lock:
        registry = _registry_object()
        if not _loaded:
            _loaded = True  # set first: a plugin calling get_registry() must not recurse
            _load_all(get_plugin_manager(), registry)
        return registry


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen, in load order, including those that failed."""
    with _lock:
        get_registry()
        return [PluginInfo(i.name, i.version, i.source, {k: list(v) for k, v in i.components.items()}, i.error)
                for i in _infos]


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Register a module/object with ``@hookimpl`` functions and run its ``smg_register`` now.

    For plugins that are not installed as a distribution (a notebook, a test). Unlike
    autoloading, a failure here raises :class:`PluginError` (after rolling back whatever
    the plugin registered), since the caller is right there to see it.
    """
    with _lock:
        registry = get_registry()
        pm = get_plugin_manager()
        plugin_name = name or pm.get_canonical_name(plugin)
        try:
            info = _register(pm, registry, plugin, plugin_name, version=_object_version(plugin), source="manual")
        except PluginError:
            raise
        except (Exception, SystemExit, GeneratorExit) as exc:  # a plugin's sys.exit() must not end the caller
            raise PluginError(f"plugin {plugin_name!r} failed to register: {_describe(exc)}") from exc
        _infos.append(info)
        return info


def reset_plugins() -> None:
    """Forget every plugin and registered name; the next :func:`get_registry` reloads.

    Meant for tests. Modules already imported stay in ``sys.modules``.
    """
    global _pm, _registry, _loaded
    with _lock:
        _pm = None
        _registry = None
        _infos.clear()
        _loaded = False


# -- loading ------------------------------------------------------------------------------


def _object_version(plugin: object) -> str | None:
    version = getattr(plugin, "__version__", None)
    return str(version) if version is not None else None


def _core_version() -> str | None:
    try:
        return importlib.metadata.version("smg-sdk")
    except importlib.metadata.PackageNotFoundError:
        return _object_version(sys.modules.get("smg_sdk"))


def _register(
    pm: pluggy.PluginManager, registry: Registry, plugin: object, name: str, *, version: str | None, source: str
) -> PluginInfo:
    """Register one plugin and call its ``smg_register``; on any failure undo everything.

    Each plugin's hookimpls are called individually (not through ``pm.hook``) so that an
    exception or a name clash can be pinned on, and rolled back for, that plugin alone.
    """
    if pm.has_plugin(name):
        raise PluginError(f"a plugin named {name!r} is already registered; give this one another name.")
    if pm.is_registered(plugin):
        raise PluginError(
            f"{plugin!r} is already registered as plugin {pm.get_name(plugin)!r}; it cannot be registered twice."
        )
    try:
        pm.register(plugin, name=name)  # validates hookimpl signatures against the hookspecs
        for caller in pm.get_hookcallers(plugin) or []:
            if caller.spec is None:
                impls = [i for i in caller.get_hookimpls() if i.plugin is plugin and not i.optionalhook]
                if impls:
                    raise PluginError(
                        f"plugin {name!r} implements hook {caller.name!r}, which smg-sdk does not define "
                        f"(known hooks: {', '.join(_hook_names())}); fix the name or mark it optionalhook=True."
                    )
        impls = [i for i in pm.hook.smg_register.get_hookimpls() if i.plugin is plugin]
        with registry.registering(name):
            for impl in impls:
                impl.function(**{arg: registry for arg in impl.argnames})
    except BaseException:
        registry.forget(name)
        if pm.is_registered(plugin):  # pluggy leaves a half-registered plugin on errors
            pm.unregister(plugin)
        raise
    return PluginInfo(name=name, version=version, source=source, components=registry.components(name))


def _hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs) if name.startswith("smg_"))


class _Interrupts:
    """Tells a Ctrl-C from the user apart from a ``KeyboardInterrupt`` a plugin raises itself.

    While plugins load (in the main thread), SIGINT goes through a handler that records it
    before raising as usual; an interrupt without that record came from plugin code. Where
    SIGINT is ignored (a background job), no interrupt can be the user's; where the handler
    cannot be installed otherwise, every interrupt counts as the user's.
    """

    def __init__(self) -> None:
        self.seen = False
        self.ignored = False
        self._previous: Any = None

    def __enter__(self) -> "_Interrupts":
        main = threading.current_thread() is threading.main_thread()
        current = signal.getsignal(signal.SIGINT)
        self.ignored = current is signal.SIG_IGN
        if main and current is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def from_user(self) -> bool:
        """Whether a KeyboardInterrupt seen inside the block may have come from the user."""
        return self.seen or (self._previous is None and not self.ignored)

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        signal.default_int_handler(signum, frame)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _load_one(pm: pluggy.PluginManager, registry: Registry, name: str, load: Any, version: str | None, source: str) -> None:
    """Import and register one plugin, turning any failure into an "error" entry + warning.

    That includes ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException``s raised by
    the plugin's import or registration: one plugin cannot stop the others from loading. A
    Ctrl-C from the user still interrupts.
    """
    with _Interrupts() as interrupts:
        try:
            plugin = load()
            info = _register(pm, registry, plugin, name, version=version, source=source)
        except BaseException as exc:  # noqa: BLE001 - isolation is the point; the user's Ctrl-C is re-raised
            if isinstance(exc, KeyboardInterrupt) and interrupts.from_user():
                raise
            info = _failed(name, version, exc)
    _infos.append(info)


def _failed(name: str, version: str | None, exc: BaseException) -> PluginInfo:
    error = _describe(exc)
    warnings.warn(f"smg-sdk plugin {name!r} failed to load: {error}", PluginLoadWarning, stacklevel=3)
    return PluginInfo(name=name, version=version, source="error", error=error)


def _load_all(pm: pluggy.PluginManager, registry: Registry) -> None:
    _load_one(pm, registry, BUILTIN_MODULE, lambda: importlib.import_module(BUILTIN_MODULE), _core_version(), "builtin")
    wanted = selected_plugins()
    if wanted is None and autoload_disabled():
        return
    # sys.path order, then file order: the same "first one wins" rule as imports and pytest.
    entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    for ep in entry_points:
        if wanted is not None and ep.name not in wanted:
            continue
        dist = getattr(ep, "dist", None)
        version = getattr(dist, "version", None) if dist is not None else None
        _load_one(pm, registry, ep.name, ep.load, version, "entry point")
    for name in sorted((wanted or set()) - {ep.name for ep in entry_points}):
        installed = ", ".join(sorted({ep.name for ep in entry_points})) or "none"
        _infos.append(_failed(name, None, PluginError(
            f"{LOAD_PLUGINS_ENV} names {name!r}, but no installed plugin has that name (installed: {installed}); "
            "check the spelling against `smg plugins`.")))


# -- sub-commands --------------------------------------------------------------------------


def add_plugin_commands(subparsers: argparse._SubParsersAction) -> dict[str, list[str]]:
    """Call each loaded plugin's ``smg_register_commands(subparsers)``, one plugin at a time.

    Returns plugin name -> the sub-commands (and aliases) it added, in load order. A plugin
    whose hook raises (``SystemExit`` included), replaces an existing command or adds one
    without a handler (``set_defaults(func=...)``) is reported with a
    :class:`PluginLoadWarning`, and every command it added is removed again; the core's and
    the other plugins' commands stay. A Ctrl-C from the user still interrupts.
    """
    with _lock:
        get_registry()
        pm = get_plugin_manager()
        added: dict[str, list[str]] = {}
        for info in list(_infos):
            plugin = pm.get_plugin(info.name)  # None for a plugin that failed to load
            impls = [i for i in pm.hook.smg_register_commands.get_hookimpls() if i.plugin is plugin]
            if plugin is None or not impls:
                continue
            with _Interrupts() as interrupts:
                try:
                    added[info.name] = _call_command_hooks(impls, subparsers, info.name)
                except BaseException as exc:  # noqa: BLE001 - isolation is the point; the user's Ctrl-C is re-raised
                    if isinstance(exc, KeyboardInterrupt) and interrupts.from_user():
                        raise
                    warnings.warn(f"smg-sdk plugin {info.name!r} failed to add its smg commands, which are skipped: "
                                  f"{_describe(exc)}", PluginLoadWarning, stacklevel=2)
        return added


def _has_handler(parser: argparse.ArgumentParser) -> bool:
    """Whether ``parser`` runs a handler: its own ``func``, or required sub-commands that all have one."""
    if callable(parser.get_default("func")):
        return True
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return any(group.required and group.choices and all(_has_handler(p) for p in group.choices.values())
               for group in groups)


def _call_command_hooks(impls: list[Any], subparsers: argparse._SubParsersAction, name: str) -> list[str]:
    """Run one plugin's command hooks; on any failure restore ``subparsers`` as it was and re-raise.

    argparse has no public way to remove a sub-command, so the rollback restores its two
    private containers (``choices``, the name -> parser map, is public; ``_choices_actions``
    holds the help lines); both exist unchanged in Python 3.10 to 3.13.
    """
    before = dict(subparsers.choices)
    help_lines = len(subparsers._choices_actions)
    try:
        for impl in impls:
            impl.function(**{arg: subparsers for arg in impl.argnames})
        replaced = sorted(n for n, parser in before.items() if subparsers.choices.get(n) is not parser)
        if replaced:
            raise PluginError(f"plugin {name!r} replaced the existing command(s) {replaced}; choose other names.")
        new = [n for n in subparsers.choices if n not in before]
        for command in new:
            if not _has_handler(subparsers.choices[command]):
                raise PluginError(f"plugin {name!r} added command {command!r} without a handler; "
                                  "call set_defaults(func=handler) on its parser (or on each of its sub-commands).")
        return new
    except BaseException:
        subparsers.choices.clear()
        subparsers.choices.update(before)
        del subparsers._choices_actions[help_lines:]
        raise
