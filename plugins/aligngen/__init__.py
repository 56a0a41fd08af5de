"""smg_plugins.aligngen: AlignGen (Lin et al., 2025, cross-modality prior alignment) for smg-sdk.

A learnable token S* before each concept word, a Deviation Extraction Module that rewrites
S* from the subject's Redux image tokens, a selective cross-modal attention mask, reference
tokens through FLUX's own VAE + DiT with a LoRA active on them only, and the training
strategies (reference dropout, concept-name substitution). Uses only smg-sdk's public API.

Registers: encoders ``aligngen-text``, ``redux``; aggregator ``dem``; rule ``aligngen-mask``;
presets ``aligngen-tiny`` and ``aligngen``; the SubjectWorld training recipe ``aligngen``
(``smg train subjectworld --recipe aligngen``, :mod:`.recipe`).
"""

from smg_sdk import hookimpl

__version__ = "0.1.0"


@hookimpl
def smg_register(registry) -> None:
    """Components this plugin provides."""
    from .dem import DeviationExtractionModule
    from .mask_rule import SelectiveCrossModalMask
    from .preset import aligngen, aligngen_tiny
    from .recipe import aligngen_recipe
    from .redux import ReduxEncoder
    from .text_encoder import AlignGenTextEncoder

    registry.add_encoder("aligngen-text", AlignGenTextEncoder)
    registry.add_encoder("redux", ReduxEncoder)
    registry.add_aggregator("dem", DeviationExtractionModule)
    registry.add_rule("aligngen-mask", SelectiveCrossModalMask)
    registry.add_preset("aligngen-tiny", aligngen_tiny)
    registry.add_preset("aligngen", aligngen)
    registry.add_recipe("aligngen", aligngen_recipe)
