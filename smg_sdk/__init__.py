"""smg-sdk: subject-driven image generation on FLUX, composed from plugins.

>>> from smg_sdk import SubjectPipeline, Subject
>>> pipe = SubjectPipeline.from_preset("tiny")
>>> out = pipe("a photo of <1> on the beach", subjects=[Subject(img, "dog")], seed=0)

``__all__`` is the public API: everything a plugin may import, and only from here
(``from smg_sdk import X``; ``tests/test_public_api.py`` checks the in-tree plugins and the
example plugin). Names that need diffusers, transformers or a model are loaded on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .attention.masks import JointAttentionMask, JointLayout, TokenGroup
from .conditions import ConditionSet, ConditionStream
from .contracts import CompositionError, StreamSpec, check_composition
from .errors import (
    AttentionRuleError,
    BackendError,
    ConditionError,
    ConfigError,
    DataError,
    DataLookupError,
    ModelLoadError,
    PlacementError,
    PlanError,
    PluginError,
    RegistryError,
    RequestError,
    ScheduleError,
    SMGError,
    WeightsMismatchError,
)
from .interfaces import (
    Aggregator,
    AttentionRule,
    ConditionEncoder,
    DenoisingSchedule,
    Planner,
    SceneJudge,
    Verifier,
    component_config,
    component_name,
)
from .placement import execution_device, module_to, onload, parse_dtype
from .plans import as_layout, check_layout_subjects, layout_text, plans_for_rows
from .plugins.hookspecs import hookimpl
from .prompts import subject_char_spans, tokens_in_spans
from .types import PLACEHOLDER, BatchRecord, Plan, PipelineOutput, Request, Subject

_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    ".pipeline": ("SubjectPipeline",),
    ".encoding_cache": ("EncodingCache",),
    ".backends.base": ("Backend",),
    ".backends.flux": ("FluxBackend",),
    ".sampling": ("CachedReferenceOptions", "SampleResult", "SamplingCall", "prepare_sampling"),
    ".attention.passes": ("AttentionPass", "build_attention_pass"),
    ".plugins": ("get_registry", "list_plugins"),
    ".plugins.registry": ("is_valid_name",),
    ".atomic": ("atomic_folder", "check_output_folder"),
    ".mllm": ("load_mllm",),
    ".data.subjectworld": ("SHAPES", "SubjectWorld", "relation_holds"),
    ".eval.world_eval": ("ci95", "heldout_scores"),
    ".eval.clip": ("ClipEmbedder",),
    ".presets.tiny": ("TINY_DEFAULTS", "tiny_clip_path", "tiny_flux_path", "tiny_qwen_vl_path", "tiny_redux_path",
                      "tiny_siglip_path"),
    ".training": ("FlowMatchingTrainer", "LoopConfig", "TrainResult", "TrainerConfig", "TrainerHook", "TrainingLoop",
                  "TrainingSample", "adapter_parameters", "module_parameters"),
    ".training.loop": ("RESUME_MAY_CHANGE", "is_training_output", "sample_index", "sample_rng"),
    ".training.recipes": ("RecipeOptions", "SubjectWorldSamples"),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str):
    """Load a lazily exported name (diffusers and model code only when first used)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smg_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Aggregator", "AttentionPass", "AttentionRule", "AttentionRuleError", "Backend", "BackendError",
    "BatchRecord", "CachedReferenceOptions", "ClipEmbedder", "CompositionError", "ConditionEncoder",
    "ConditionError", "ConditionSet", "ConditionStream", "ConfigError", "DataError", "DataLookupError",
    "DenoisingSchedule", "EncodingCache", "FlowMatchingTrainer", "FluxBackend", "JointAttentionMask", "JointLayout",
    "LoopConfig", "ModelLoadError", "PLACEHOLDER", "PipelineOutput", "Plan", "PlacementError", "PlanError", "Planner",
    "PluginError", "RESUME_MAY_CHANGE", "RegistryError", "Request", "RequestError", "SMGError", "SampleResult",
    "SamplingCall", "SceneJudge", "ScheduleError", "StreamSpec", "Subject", "SubjectPipeline", "TINY_DEFAULTS",
    "TokenGroup", "TrainResult", "TrainerConfig", "TrainerHook", "TrainingLoop", "TrainingSample", "Verifier",
    "WeightsMismatchError", "adapter_parameters", "as_layout", "atomic_folder", "build_attention_pass",
    "check_composition", "check_layout_subjects", "check_output_folder", "component_config", "component_name",
    "execution_device", "get_registry", "hookimpl", "is_training_output", "is_valid_name", "layout_text",
    "list_plugins", "load_mllm", "module_parameters", "module_to", "onload", "parse_dtype", "plans_for_rows",
    "prepare_sampling", "sample_index", "sample_rng", "subject_char_spans", "tiny_clip_path", "tiny_flux_path", "tiny_qwen_vl_path",
    "tiny_redux_path", "tiny_siglip_path", "tokens_in_spans",
    # SubjectWorld for plugins' recipes and evaluations (MUSIC's planner data and metrics; its class words)
    "SHAPES", "SubjectWorld", "ci95", "relation_holds",
    # what a registered SubjectWorld recipe (registry kind "recipe") receives and uses
    "RecipeOptions", "SubjectWorldSamples", "heldout_scores",
]
