"""A small, user-extendable concept hierarchy for concept-name substitution in training.

``ConceptHierarchy`` maps a concept to its parent ("acoustic guitar" -> "guitar" ->
"musical instrument"). Training replaces a subject's concept name by one of its ancestors
at random, so S* and the reference, not the word, have to carry the identity.
"""

from __future__ import annotations

from typing import Mapping

from smg_sdk import SMGError

DEFAULT_PARENTS: dict[str, str] = {
    # instruments
    "acoustic guitar": "guitar", "electric guitar": "guitar", "guitar": "musical instrument",
    "violin": "string instrument", "string instrument": "musical instrument", "piano": "musical instrument",
    "drum": "musical instrument",
    # animals (DreamBench: dog, cat)
    "corgi": "dog", "puppy": "dog", "dog": "animal", "kitten": "cat", "cat": "animal", "bird": "animal",
    "stuffed animal": "toy", "teddy bear": "stuffed animal", "plushie": "stuffed animal",
    # machines and toys (DreamBench: toy, robot toy, rc car)
    "robot": "machine", "machine": "object", "rc car": "toy car", "toy car": "toy", "car": "vehicle",
    "toy": "object", "cartoon": "character",
    # containers and tableware (DreamBench: bowl, can, teapot, vase)
    "mug": "cup", "cup": "container", "bowl": "container", "can": "container", "vase": "container",
    "teapot": "pot", "pot": "container", "container": "object",
    # wearables (DreamBench: sneaker, boot, glasses, backpack)
    "sneaker": "shoe", "boot": "shoe", "shoe": "clothing", "glasses": "accessory", "sunglasses": "glasses",
    "backpack": "bag", "bag": "accessory", "accessory": "object",
    # home (DreamBench: candle, clock)
    "candle": "object", "clock": "object", "chrysanthemum": "flower", "flower": "plant",
}


class ConceptHierarchy:
    """Concept -> parent links; ``ancestors(word)`` is the chain upwards, nearest first."""

    def __init__(self, parents: Mapping[str, str] | None = None):
        self._parents: dict[str, str] = {}
        for child, parent in (parents or {}).items():
            self.add(child, parent)

    @classmethod
    def default(cls) -> "ConceptHierarchy":
        """The built-in hierarchy (instruments, animals, DreamBench's classes...)."""
        return cls(DEFAULT_PARENTS)

    @staticmethod
    def _key(word: str) -> str:
        return " ".join(word.lower().split())

    def add(self, child: str, parent: str) -> None:
        """Add (or replace) ``child -> parent``; refuses links that would make a cycle."""
        if not isinstance(child, str) or not isinstance(parent, str) or not child.strip() or not parent.strip():
            raise SMGError(f"Hierarchy links need two non-empty words, got {child!r} -> {parent!r}.")
        c, p = self._key(child), self._key(parent)
        if c == p or c in self._chain(p):
            raise SMGError(f"Adding {child!r} -> {parent!r} would make a cycle in the concept hierarchy.")
        self._parents[c] = " ".join(parent.split())

    def extend(self, parents: Mapping[str, str]) -> "ConceptHierarchy":
        """A new hierarchy with these links added on top of this one."""
        out = ConceptHierarchy(self._parents)
        for child, parent in parents.items():
            out.add(child, parent)
        return out

    def _chain(self, key: str) -> list[str]:
        chain = []
        while key in self._parents:
            key = self._key(self._parents[key])
            chain.append(key)
        return chain

    def ancestors(self, word: str) -> list[str]:
        """Parent, grandparent, ... of ``word`` (case-insensitive); [] for unknown words."""
        out, key = [], self._key(word)
        while key in self._parents:
            parent = self._parents[key]
            out.append(parent)
            key = self._key(parent)
        return out

    def as_dict(self) -> dict[str, str]:
        return dict(self._parents)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._key(word) in self._parents

    def __len__(self) -> int:
        return len(self._parents)
