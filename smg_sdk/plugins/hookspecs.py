"""The hooks smg-sdk calls on plugins.

There is deliberately one hook. Plugins do not return values for the core to merge; they
are handed a :class:`~smg_sdk.plugins.registry.Registry` and call its ``add_*`` methods
(the register-callback style of ``llm`` and ``datasette``). That keeps the hook surface
stable while new component kinds are added, and lets the registry attribute every name to
the plugin that registered it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry

PROJECT_NAME = "smg_sdk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks hook specifications (only the core uses it)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's hook implementations, e.g. ``@hookimpl def smg_register(registry)``."""


@hookspec
def smg_register(registry: "Registry") -> None:
    """Register the plugin's components by calling ``registry.add_<kind>(name, factory)``.

    A plugin module, listed under the ``smg_sdk`` entry-point group of its distribution::

        from smg_sdk import hookimpl

        @hookimpl
        def smg_register(registry):
            registry.add_aggregator("my-pooling", MyPooling)
            registry.add_rule("my-rule", make_rule)

    Kinds: ``encoder``, ``aggregator``, ``rule``, ``schedule``, ``planner``, ``verifier``,
    ``judge``, ``backend`` and ``preset``. A factory is any callable; it is called with the
    component's config as keyword arguments when a pipeline is built, so register classes
    or cheap functions and do heavy work (loading weights) inside the factory, not here.

    The hook is called once per plugin, in isolation: if it raises, or claims a name
    another plugin already owns, everything this plugin registered is rolled back, the
    plugin is reported as failed, and all other plugins still load. The return value is
    ignored.
    """
