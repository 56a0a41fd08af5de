"""Training: one training loop, a generic flow-matching trainer on it, samples, checkpoints."""

from .data import TrainingSample
from .loop import LoopConfig, TrainingLoop
from .trainer import (
    FlowMatchingTrainer,
    TrainerConfig,
    TrainerHook,
    TrainResult,
    adapter_parameters,
    module_parameters,
)

__all__ = [
    "FlowMatchingTrainer", "LoopConfig", "TrainResult", "TrainerConfig", "TrainerHook", "TrainingLoop", "TrainingSample",
    "adapter_parameters", "module_parameters",
]
