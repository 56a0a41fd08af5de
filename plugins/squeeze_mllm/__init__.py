"""smg_plugins.squeeze_mllm: Squeeze-MLLM (Zheng et al., 2026) for smg-sdk.

MLLM conditioning (instruction and references read jointly), Layerwise Attention Pooling
with Dual Layer Aggregation, VAE identity references, multi-stage denoising, and the
two-stage training plan, run on SubjectWorld by ``smg train subjectworld --recipe squeeze``
(:mod:`.recipe`). Uses only smg-sdk's public API.
"""

from smg_sdk import hookimpl


@hookimpl
def smg_register(registry) -> None:
    """Components this plugin provides."""
    from .encoder import MLLMConditionEncoder
    from .pooling import DualLayerAggregation, FixedLayers, LAPAggregator, LastLayer
    from .preset import squeeze, squeeze_tiny
    from .recipe import squeeze_recipe
    from .schedule import MultiStageSchedule

    registry.add_encoder("squeeze-mllm", MLLMConditionEncoder)
    registry.add_aggregator("lap", LAPAggregator)
    registry.add_aggregator("dla", DualLayerAggregation)
    registry.add_aggregator("last-layer", LastLayer)
    registry.add_aggregator("fixed-layers", FixedLayers)
    registry.add_schedule("multistage", MultiStageSchedule)
    registry.add_preset("squeeze-tiny", squeeze_tiny)
    registry.add_preset("squeeze", squeeze)
    registry.add_recipe("squeeze", squeeze_recipe)
