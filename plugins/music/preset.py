"""The ``music-tiny`` preset: the tiny FLUX with MUSIC's planner, layout rule and verifier."""

from __future__ import annotations

from typing import Any

from smg_sdk import SubjectPipeline, get_registry


def music_tiny(planner: str = "music", layout_mode: str = "hard", reference_mode: str = "concat",
               **planner_settings: Any) -> SubjectPipeline:
    """Tiny FLUX + ``music`` (or ``music-heuristic``) planner + ``music-layout`` + ``clip-text``."""
    registry = get_registry()
    tiny = SubjectPipeline.from_preset("tiny", reference_mode=reference_mode)
    return SubjectPipeline(
        tiny.backend, tiny.encoders, tiny.aggregators, [*tiny.rules, registry.build("rule", "music-layout", mode=layout_mode)],
        tiny.schedule, registry.build("planner", planner, **planner_settings), registry.build("verifier", "clip-text"),
        defaults=tiny.defaults,
    )
