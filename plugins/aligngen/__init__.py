"""smg_plugins.aligngen (work in progress): registers nothing yet."""

from smg_sdk import hookimpl


@hookimpl
def smg_register(registry) -> None:
    """Components this plugin provides."""
