"""smg-spotlight: subject-word emphasis and a spotlight attention rule for smg-sdk."""

from smg_sdk import hookimpl

__version__ = "0.2.0"


@hookimpl
def smg_register(registry) -> None:
    """Register this plugin's components by name."""
    from .emphasis import WordEmphasis
    from .spotlight import Spotlight

    registry.add_aggregator("word-emphasis", WordEmphasis)
    registry.add_rule("spotlight", Spotlight)
