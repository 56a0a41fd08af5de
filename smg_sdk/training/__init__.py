"""Training: a generic flow-matching trainer, samples, checkpoints."""

from .data import TrainingSample
from .trainer import (
    FlowMatchingTrainer,
    TrainerConfig,
    TrainerHook,
    TrainResult,
    adapter_parameters,
    module_parameters,
)

__all__ = [
    "FlowMatchingTrainer", "TrainResult", "TrainerConfig", "TrainerHook", "TrainingSample",
    "adapter_parameters", "module_parameters",
]
