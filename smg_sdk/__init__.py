"""smg-sdk: subject-driven image generation on FLUX, composed from plugins.

>>> from smg_sdk import SubjectPipeline, Subject
>>> pipe = SubjectPipeline.from_preset("tiny")
>>> out = pipe("a photo of <1> on the beach", subjects=[Subject(img, "dog")], seed=0)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .conditions import ConditionSet, ConditionStream
from .contracts import CompositionError, StreamSpec
from .errors import (
    AttentionRuleError,
    BackendError,
    ConditionError,
    ModelLoadError,
    PluginError,
    RegistryError,
    RequestError,
    ScheduleError,
    SMGError,
    WeightsMismatchError,
)
from .interfaces import Aggregator, AttentionRule, ConditionEncoder, DenoisingSchedule, Planner, SceneJudge, Verifier
from .plugins.hookspecs import hookimpl
from .types import Plan, PipelineOutput, Request, Subject


def __getattr__(name: str):
    # Heavy imports (diffusers) only when the pipeline or backend is first used.
    if name == "SubjectPipeline":
        from .pipeline import SubjectPipeline

        return SubjectPipeline
    if name == "FluxBackend":
        from .backends.flux import FluxBackend

        return FluxBackend
    raise AttributeError(f"module 'smg_sdk' has no attribute {name!r}")


__all__ = [
    "Aggregator", "AttentionRule", "AttentionRuleError", "BackendError", "CompositionError", "ConditionEncoder",
    "ConditionError",
    "ConditionSet", "ConditionStream", "DenoisingSchedule", "FluxBackend", "ModelLoadError", "Plan",
    "PipelineOutput", "Planner", "PluginError", "RegistryError", "Request", "RequestError", "SMGError",
    "ScheduleError", "SceneJudge", "StreamSpec", "Subject", "SubjectPipeline", "Verifier", "WeightsMismatchError",
    "hookimpl",
]
