"""smg_plugins.music: MUSIC (Zhou et al., ACL 2026) for smg-sdk.

Multi-subject generation as planning: an MLLM writes a visual chain of thought and an 8x8
layout of subject ids (:mod:`.planner`, format in :mod:`.plan_format`, heuristic fallback in
:mod:`.heuristic`); image tokens in a subject's cells attend to that subject's reference
(:mod:`.layout_rule`); N plans give N candidates ranked by a verifier (:mod:`.verifiers`);
training data with decimation augmentation (:mod:`.data`, :mod:`.autodata`) teaches the
planner (:mod:`.training`). Uses only smg-sdk's public API.
"""

from smg_sdk import hookimpl


@hookimpl
def smg_register(registry) -> None:
    """Components this plugin provides."""
    from .heuristic import HeuristicPlanner
    from .layout_rule import LayoutAttentionRule
    from .planner import MusicPlanner
    from .preset import music, music_tiny
    from .verifiers import ClipTextVerifier, JudgeVerifier

    registry.add_planner("music", MusicPlanner)
    registry.add_planner("music-heuristic", HeuristicPlanner)
    registry.add_rule("music-layout", LayoutAttentionRule)
    registry.add_verifier("clip-text", ClipTextVerifier)
    registry.add_verifier("scene-judge", JudgeVerifier)
    registry.add_preset("music-tiny", music_tiny)
    registry.add_preset("music", music)


@hookimpl
def smg_register_commands(subparsers) -> None:
    """``smg music-planner train|eval`` (planner training on SubjectWorld and its measurement)."""
    from .cli import add_commands

    add_commands(subparsers)
