"""AlignGen's training strategies as trainer hooks, and the recipe that trains S*, DEM and LoRA.

- :class:`ReferenceDropout`: with probability ``p`` the references become black images, so
  the model also learns to generate from the text (and S*) alone.
- :class:`ConceptSubstitution`: with probability ``p`` a subject's concept name is replaced
  by one of its ancestors in a :class:`ConceptHierarchy` ("corgi" -> "dog" or "animal"), so
  the identity must come from S* and the reference rather than from the word.

Trainable: the S* embeddings (``aligngen-text``), the DEM, and the reference LoRA adapter.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
from PIL import Image
from torch import nn

from smg_sdk import (
    FlowMatchingTrainer,
    PLACEHOLDER,
    SMGError,
    Subject,
    TrainerConfig,
    TrainerHook,
    TrainingSample,
    module_parameters,
)

from .dem import DeviationExtractionModule
from .hierarchy import ConceptHierarchy
from .text_encoder import AlignGenTextEncoder

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import SubjectPipeline


def _check_rate(name: str, p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise SMGError(f"{name} must be a probability in [0, 1], got {p!r}.")


def black_subject(subject: Subject) -> Subject:
    """The same subject with its image replaced by a black image of the same size."""
    if isinstance(subject.image, torch.Tensor):
        return Subject(torch.zeros_like(subject.image), subject.class_word)
    return Subject(Image.new("RGB", subject.image.size, (0, 0, 0)), subject.class_word)


@dataclass
class ReferenceDropout(TrainerHook):
    """Replace the references by black images with probability ``p`` (per sample, or per subject)."""

    p: float = 0.5
    per_subject: bool = False

    def __post_init__(self) -> None:
        _check_rate("ReferenceDropout.p", self.p)

    def on_sample(self, sample: TrainingSample, rng: random.Random) -> TrainingSample:
        n = len(sample.subjects)
        if self.per_subject:
            drops = [rng.random() < self.p for _ in range(n)]
        else:
            drops = [rng.random() < self.p] * n
        subjects = [black_subject(s) if d else s for s, d in zip(sample.subjects, drops)]
        return dataclasses.replace(sample, subjects=subjects, extras={**sample.extras, "reference_dropped": drops})


@dataclass
class ConceptSubstitution(TrainerHook):
    """Replace each subject's concept name by a random ancestor with probability ``p``.

    Subjects whose class word has no ancestor in ``hierarchy`` are left as they are. With
    placeholders the class word is what the prompt shows; without, its first whole-word
    occurrence in the prompt is replaced too.
    """

    p: float = 0.5
    hierarchy: ConceptHierarchy = field(default_factory=ConceptHierarchy.default)

    def __post_init__(self) -> None:
        _check_rate("ConceptSubstitution.p", self.p)
        if isinstance(self.hierarchy, dict):
            self.hierarchy = ConceptHierarchy.default().extend(self.hierarchy)

    def on_sample(self, sample: TrainingSample, rng: random.Random) -> TrainingSample:
        uses_placeholders = PLACEHOLDER.search(sample.prompt) is not None
        prompt, subjects, changes = sample.prompt, [], []
        for subject in sample.subjects:
            ancestors = self.hierarchy.ancestors(subject.class_word) if subject.class_word else []
            if ancestors and rng.random() < self.p:
                new = ancestors[rng.randrange(len(ancestors))]
                if not uses_placeholders:
                    prompt = re.sub(rf"\b{re.escape(subject.class_word)}\b", lambda _m, w=new: w, prompt, count=1)
                changes.append((subject.class_word, new))
                subject = Subject(subject.image, new)
            else:
                changes.append(None)
            subjects.append(subject)
        extras = {**sample.extras, "concept_substituted": changes}
        return dataclasses.replace(sample, prompt=prompt, subjects=subjects, extras=extras)


@dataclass
class AlignGenTrainingStrategy:
    """The paper's augmentations: reference dropout (p = 0.5) and concept substitution."""

    reference_dropout: float = 0.5
    per_subject_dropout: bool = False
    substitution: float = 0.5
    extra_parents: dict[str, str] = field(default_factory=dict)

    def hooks(self) -> list[TrainerHook]:
        hierarchy = ConceptHierarchy.default().extend(self.extra_parents)
        return [
            ReferenceDropout(self.reference_dropout, self.per_subject_dropout),
            ConceptSubstitution(self.substitution, hierarchy),
        ]


def aligngen_trainable(pipe: "SubjectPipeline", lora: bool = True) -> dict[str, nn.Parameter]:
    """S* embeddings, DEM weights and (``lora``) the reference LoRA of an AlignGen pipeline."""
    params: dict[str, nn.Parameter] = {}
    for i, encoder in enumerate(pipe.encoders):
        if isinstance(encoder, AlignGenTextEncoder):
            params.update(module_parameters(f"sstar{i}", encoder.token))
    for i, aggregator in enumerate(pipe.aggregators):
        if isinstance(aggregator, DeviationExtractionModule):
            params.update(module_parameters(f"dem{i}", aggregator))
    if lora:
        stream_adapters = getattr(pipe.backend, "stream_adapters", set())
        for name in sorted({getattr(e, "adapter", None) for e in pipe.encoders} & set(stream_adapters)):
            params.update(pipe.backend.adapter_parameters(name))
    if not params:
        raise SMGError("The pipeline has no AlignGen component to train (aligngen-text, dem, a reference adapter).")
    return params


def aligngen_trainer(
    pipe: "SubjectPipeline",
    dataset: Sequence[TrainingSample],
    config: TrainerConfig,
    strategy: AlignGenTrainingStrategy | None = None,
    hooks: Sequence[TrainerHook] = (),
    lora: bool = True,
) -> FlowMatchingTrainer:
    """A FlowMatchingTrainer for S*, DEM and the reference LoRA with AlignGen's augmentations."""
    strategy = strategy or AlignGenTrainingStrategy()
    return FlowMatchingTrainer(pipe, aligngen_trainable(pipe, lora=lora), dataset, config,
                               [*strategy.hooks(), *hooks])
