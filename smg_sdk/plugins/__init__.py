"""Plugin system: pluggy hooks, the component registry and plugin discovery."""

from .hookspecs import hookimpl, hookspec
from .manager import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    LOAD_PLUGINS_ENV,
    PluginInfo,
    PluginLoadWarning,
    add_plugin_commands,
    get_plugin_manager,
    get_registry,
    list_plugins,
    register_plugin,
    reset_plugins,
    selected_plugins,
)
from .registry import KINDS, Registry

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "LOAD_PLUGINS_ENV",
    "PluginInfo",
    "PluginLoadWarning",
    "Registry",
    "add_plugin_commands",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "list_plugins",
    "register_plugin",
    "reset_plugins",
    "selected_plugins",
]
