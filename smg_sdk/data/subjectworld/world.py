"""SubjectWorld samples: a target scene, its references, and every fact about them.

``SubjectWorld(split, kind, seed)[index]`` is deterministic in ``(seed, split, kind, index)``:
the same numbers give the same pixels and the same ground truth on every machine.

- ``kind="reference"``: identities drawn uniformly from ``split`` (most contradict their class
  prior: ``aligned`` marks those that do not); each subject also gets reference renders in a
  different size, position, rotation and background than in the target.
- ``kind="caption"``: text-to-image data; each subject's identity is its class's typical one
  with probability ``prior`` (the text prior a pretrained model learns), no references. With
  ``describe`` > 0, each subject is instead, with that probability, a uniform draw of the split
  named in full in the caption ("a small red star with yellow stripes"): what a real
  text-to-image base such as FLUX.1-dev can draw from words, so a reference adapter on a frozen
  base has a way in to every attribute, not only to the class.
- ``identities="typical"`` (reference kind): the *aligned* set. Each subject drawn from
  ``split`` is replaced by its class's typical identity (:func:`typical_identity`), so the text
  prior and the reference agree; scenes, layouts, relations and references are drawn by the
  same machinery from the same random stream (sample ``i`` is the default draw ``i`` with the
  subjects' colours and patterns made typical whenever its shapes are distinct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ...errors import ConfigError
from .identities import Identity, draw_identity, draw_prior_identity, typical_identity
from .render import background, paint_subject, to_image
from .scenes import PlacedSubject, Scene, instruction, sample_scene
from .vocab import BACKGROUNDS, SHAPES

LAYOUT_CELLS = 8
"""The layout grid is 8 x 8 (MUSIC's layout; one FLUX token per cell at 128 px)."""
IDENTITY_SETS = ("split", "typical")
"""``SubjectWorld.identities``: uniform draws of the split, or each class's typical identity (aligned)."""


@dataclass
class WorldSample:
    """One sample with its ground truth. Images are ``(H, W, 3)`` uint8 arrays; PIL views are properties."""

    index: int
    split: str
    kind: str
    scene: Scene
    target_pixels: np.ndarray
    masks: np.ndarray
    """``(k, H, W)`` bool: subject k's pixels in the target (subject k is ``masks[k-1]``)."""
    reference_scenes: list[list[Scene]] = field(default_factory=list)
    reference_pixels: list[list[np.ndarray]] = field(default_factory=list)
    described: tuple[bool, ...] = ()
    """Caption kind: per subject, True where the caption names its whole identity (``describe``)."""

    @property
    def identities(self) -> list[Identity]:
        return [p.identity for p in self.scene.subjects]

    @property
    def prompt(self) -> str:
        """The instruction with ``<k>`` placeholders (class words come from the subjects)."""
        return instruction(self.scene)

    @property
    def caption(self) -> str:
        """The instruction with class words in place of the placeholders (text-to-image prompt)."""
        described = self.described or (False,) * len(self.scene.subjects)
        return self._named(described)

    @property
    def described_caption(self) -> str:
        """The instruction with every subject named in full ("a small red star with yellow stripes
        left of ..."): the text-only prompt that states each identity."""
        return self._named((True,) * len(self.scene.subjects))

    def _named(self, described: Sequence[bool]) -> str:
        text = self.prompt
        for k, (placed, full) in enumerate(zip(self.scene.subjects, described), start=1):
            name = placed.identity.describe().removeprefix("a ") if full else placed.identity.shape
            text = text.replace(f"<{k}>", name)
        return text

    @property
    def aligned(self) -> list[bool]:
        """Per subject: its identity is its class's typical one (the text prior agrees with it)."""
        return [i == typical_identity(i.shape) for i in self.identities]

    @property
    def target(self) -> Image.Image:
        return to_image(self.target_pixels)

    @property
    def references(self) -> list[Image.Image]:
        """The first reference of every subject, in subject order."""
        return [to_image(refs[0]) for refs in self.reference_pixels]

    @cached_property
    def layout(self) -> np.ndarray:
        """``(8, 8)`` int64 grid of subject numbers (0 = none) from the masks (see :func:`layout_from_masks`)."""
        return layout_from_masks(self.masks, LAYOUT_CELLS)

    @property
    def cot(self) -> str:
        """The chain of thought in MUSIC's plan words: who each subject is, relations, sizes, background."""
        who = " ".join(f"<{k}> is {p.identity.describe()}." for k, p in enumerate(self.scene.subjects, 1))
        rel = " ".join(_relation_sentence(r.kind, r.subjects) for r in self.scene.relations)
        sizes = ", ".join(f"<{k}> is {p.size}" for k, p in enumerate(self.scene.subjects, 1))
        return f"{who} {rel} {sizes}. The background is {self.scene.background}."

    def plan_text(self) -> str:
        """The plan as the MUSIC planner writes it (``<cot>...</cot><layout>...</layout>``)."""
        grid = "\n".join(" ".join(str(int(v)) for v in row) for row in self.layout)
        return f"<cot>\n{self.cot}\n</cot>\n<layout>\n{grid}\n</layout>"

    def subjects(self, reference: int = 0) -> list:
        """The request's subjects: reference ``reference`` of each, with its class word."""
        from ...types import Subject

        return [Subject(to_image(refs[reference]), p.identity.shape) for refs, p in zip(self.reference_pixels, self.scene.subjects)]

    def training_sample(self):
        """This sample as a :class:`~smg_sdk.training.TrainingSample` (caption kind: no subjects, class words)."""
        from ...training.data import TrainingSample

        extras = {"layout": self.layout.tolist(), "cot": self.cot, "identities": [i.name for i in self.identities],
                  "aligned": self.aligned, "background": self.scene.background, "index": self.index}
        if self.kind == "caption":
            return TrainingSample([], self.caption, self.target, extras)
        return TrainingSample(self.subjects(), self.prompt, self.target, extras)


def _relation_sentence(kind: str, subjects: tuple[int, ...]) -> str:
    names = [f"<{k}>" for k in subjects]
    if kind == "between":
        return f"{names[0]} is between {names[1]} and {names[2]}."
    if len(names) == 2:
        return f"{names[0]} is {kind} {names[1]}."
    return f"{names[0]} is {kind}."


def layout_from_masks(masks: np.ndarray, cells: int = LAYOUT_CELLS) -> np.ndarray:
    """``(cells, cells)`` grid: each cell holds the subject covering most of it if that covers >= 25 %,
    and every subject keeps at least the cell it covers most (0 = no subject)."""
    k, h, w = masks.shape
    cover = masks.reshape(k, cells, h // cells, cells, w // cells).mean(axis=(2, 4))  # (k, cells, cells)
    grid = np.where(cover.max(axis=0) >= 0.25, cover.argmax(axis=0) + 1, 0).astype(np.int64)
    for s in range(k):
        if not (grid == s + 1).any():
            r, c = np.unravel_index(int(cover[s].argmax()), (cells, cells))
            grid[r, c] = s + 1
    return grid


@dataclass
class SubjectWorld:
    """An endless, deterministic stream of samples (index them, or iterate with :meth:`samples`).

    ``split``: ``"train"`` or ``"heldout"`` identities. ``kind``: ``"reference"`` or
    ``"caption"``. ``subjects``: the subject counts to draw from (1..6). ``side``: image side
    in px (a multiple of 16, >= 64). ``references``: renders per subject. ``prior``: for
    captions, probability of a class's typical identity. ``describe``: for captions, probability
    that a subject is instead drawn uniformly from ``split`` and named in full in the caption.
    ``identities``: for references, ``"split"`` (uniform draws of ``split``; most contradict
    their class prior, and every held-out one does) or ``"typical"`` (each draw replaced by its
    class's typical identity: the aligned set, whose text prior and references agree).
    """

    split: str = "train"
    kind: str = "reference"
    seed: int = 0
    subjects: Sequence[int] = (1, 2, 3, 4)
    side: int = 128
    references: int = 1
    prior: float = 0.9
    describe: float = 0.0
    identities: str = "split"

    def __post_init__(self) -> None:
        if self.split not in ("train", "heldout") or self.kind not in ("reference", "caption"):
            raise ConfigError(f"SubjectWorld split must be 'train' or 'heldout' and kind 'reference' or 'caption'; "
                              f"got split={self.split!r}, kind={self.kind!r}.")
        self.subjects = tuple(int(k) for k in self.subjects)
        if not self.subjects or any(not 1 <= k <= 6 for k in self.subjects):
            raise ConfigError(f"SubjectWorld subjects must be counts in 1..6, got {self.subjects}.")
        if isinstance(self.describe, bool) or not isinstance(self.describe, (int, float)) or not 0 <= self.describe <= 1:
            raise ConfigError(f"SubjectWorld describe must be a probability in [0, 1], got {self.describe!r}.")
        if self.identities not in IDENTITY_SETS or (self.identities == "typical" and self.kind != "reference"):
            raise ConfigError(f"SubjectWorld identities must be one of {IDENTITY_SETS} ('typical' with "
                              f"kind='reference'); got identities={self.identities!r}, kind={self.kind!r}.")
        if self.side % 16 or self.side < 64:
            raise ConfigError(f"SubjectWorld side must be a multiple of 16 and >= 64, got {self.side}.")

    def rng(self, index: int) -> np.random.Generator:
        stream = (self.split == "heldout") * 2 + (self.kind == "caption")
        return np.random.default_rng([self.seed, stream, *self.subjects, index])

    def __getitem__(self, index: int) -> WorldSample:
        rng = self.rng(index)
        n = self.subjects[int(rng.integers(len(self.subjects)))]
        if self.kind == "caption":
            shapes = rng.choice(len(SHAPES), size=n, replace=n > len(SHAPES))
            described = tuple(bool(self.describe) and rng.random() < self.describe for _ in shapes)
            ids = [draw_identity(rng, self.split, SHAPES[int(s)]) if full
                   else draw_prior_identity(rng, SHAPES[int(s)], self.prior) for s, full in zip(shapes, described)]
        else:
            ids = []
            while len(ids) < n:  # distinct subjects, so every subject of a scene can be told apart
                identity = draw_identity(rng, self.split)
                if self.identities == "typical":
                    identity = typical_identity(identity.shape)
                if identity not in ids:
                    ids.append(identity)
        scene = sample_scene(ids, rng, self.side)
        pixels, masks = render_scene(scene)
        sample = WorldSample(index, self.split, self.kind, scene, pixels, masks)
        if self.kind == "caption":
            sample.described = described
        if self.kind == "reference":
            for placed in scene.subjects:
                ref_scenes = [reference_scene(placed, scene, rng) for _ in range(self.references)]
                sample.reference_scenes.append(ref_scenes)
                sample.reference_pixels.append([render_scene(s)[0] for s in ref_scenes])
        return sample

    def samples(self, count: int, start: int = 0) -> Iterator[WorldSample]:
        """Samples ``start .. start + count - 1``."""
        return (self[i] for i in range(start, start + count))


def render_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene's pixels ``(H, W, 3)`` uint8 and subject masks ``(k, H, W)`` bool."""
    canvas = background(scene.background, scene.side).copy()
    masks = np.stack([paint_subject(canvas, p.identity, p.box, p.rotation) for p in scene.subjects])
    return canvas, masks


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def reference_scene(placed: PlacedSubject, target: Scene, rng: np.random.Generator) -> Scene:
    """``placed`` alone, at a different size, position, rotation and background than in ``target``."""
    side = target.side
    target_px = placed.box[2] - placed.box[0]
    choices = [px for px in range(int(0.25 * side), int(0.5 * side) + 1) if abs(px - target_px) >= 0.1 * side]
    px = choices[int(rng.integers(len(choices)))]
    best = None
    for _ in range(20):
        x0, y0 = (int(v) for v in rng.integers(1, side - px - 1, size=2))
        box = (x0, y0, x0 + px, y0 + px)
        if best is None or _iou(box, placed.box) < _iou(best, placed.box):
            best = box
        if _iou(best, placed.box) < 0.2:
            break
    others = [b for b in BACKGROUNDS if b != target.background]
    bg = others[int(rng.integers(len(others)))]
    rotation = float(5 * int(rng.integers(4, 69)))  # 20..340 degrees in 5-degree steps (cached sprites)
    return Scene(bg, (PlacedSubject(placed.identity, placed.size, best, rotation),), (), side)


__all__ = ["IDENTITY_SETS", "LAYOUT_CELLS", "SubjectWorld", "WorldSample", "layout_from_masks", "reference_scene", "render_scene"]
