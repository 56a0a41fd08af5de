"""SubjectWorld: a procedural world of subjects where every fact about an image is known.

Subjects are shapes (the class word: "star", "ring", ...) with a body colour and a surface
pattern; scenes place 1..6 of them on a background by stated relations; references show each
subject alone in another pose. Rendering is numpy + PIL, deterministic in (seed, index)::

    from smg_sdk.data.subjectworld import SubjectWorld
    world = SubjectWorld(split="heldout", kind="reference", seed=0, subjects=(2,))
    sample = world[0]
    sample.prompt            # "a small <2> left of a large <1> on sand"
    sample.subjects()        # [Subject(reference image, "star"), ...] for SubjectPipeline
    sample.target, sample.masks, sample.layout, sample.plan_text()

It plays three roles: training data for the tiny preset, an exact benchmark (with the
oracle in :mod:`smg_sdk.eval.oracle`), and the ablation bench for each method's claim.
"""

from .identities import Identity, all_identities, split_identities, typical_identity
from .render import background, paint_subject
from .scenes import ParsedInstruction, PlacedSubject, Relation, Scene, instruction, parse_instruction, relation_holds
from .vocab import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, SIZES, TYPICAL
from .world import LAYOUT_CELLS, SubjectWorld, WorldSample, layout_from_masks, render_scene

__all__ = [
    "BACKGROUNDS", "COLOURS", "Identity", "LAYOUT_CELLS", "PATTERNS", "ParsedInstruction", "PlacedSubject",
    "Relation", "SHAPES", "SIZES", "Scene", "SubjectWorld", "TYPICAL", "WorldSample", "all_identities",
    "background", "instruction", "layout_from_masks", "paint_subject", "parse_instruction", "relation_holds",
    "render_scene", "split_identities", "typical_identity",
]
