"""The hooks smg-sdk calls on plugins.

There are two hooks, both in the register-callback style of ``llm`` and ``datasette``:
plugins do not return values for the core to merge, they are handed an object and add to
it. :func:`smg_register` receives the :class:`~smg_sdk.plugins.registry.Registry` (new
component kinds never need a new hook, and every name is attributed to its plugin);
:func:`smg_register_commands` receives the ``smg`` command line's argparse sub-parsers
(``llm``'s ``register_commands``, for argparse instead of click).
"""

from __future__ import annotations

import argparse
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
    ``judge``, ``backend``, ``preset`` and ``recipe``. A factory is any callable; it is called
    with the component's config as keyword arguments when a pipeline is built (a ``recipe``
    factory is called as ``factory(options, log, **recipe_options)`` by ``smg train subjectworld``,
    see :mod:`smg_sdk.training.recipes`), so register classes or cheap functions and do heavy
    work (loading weights, training) inside the factory, not here.

    The hook is called once per plugin, in isolation: if it raises, or claims a name
    another plugin already owns, everything this plugin registered is rolled back, the
    plugin is reported as failed, and all other plugins still load. The return value is
    ignored.
    """


@hookspec
def smg_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``smg`` sub-commands: call ``subparsers.add_parser(name, help=...)`` for each.

    ``subparsers`` is the object ``argparse.ArgumentParser.add_subparsers`` returned for
    ``smg``. Each sub-command must store its handler with ``set_defaults(func=handler)``;
    ``smg NAME ...`` then calls ``handler(args: argparse.Namespace)``, whose return value
    (an int, or None for 0) is the exit code. A handler that raises an
    :class:`~smg_sdk.errors.SMGError` is shown as one ``smg: error: ...`` line::

        import argparse
        from smg_sdk import hookimpl

        def hello(args: argparse.Namespace) -> int:
            print(f"hello {args.name}")
            return 0

        @hookimpl
        def smg_register_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("--name", default="world")
            p.set_defaults(func=hello)

    Called once per plugin, in load order, when ``smg`` is run with a command that is not one
    of the core's (or with none, or ``--help``). If the hook raises, adds a command that
    already exists, or adds one without a handler, the commands that plugin added are
    removed, a ``PluginLoadWarning`` names the plugin, and the other plugins' commands and
    the core's still work. Build parsers only here: import heavy modules inside the handler.
    """
