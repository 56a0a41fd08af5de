"""The contracts plugins implement. The core calls these and knows nothing else about them.

Components are built by a registry factory (``factory(**config)``); the registry records the
name and config on the object so a pipeline can be saved and rebuilt. Components that are
``torch.nn.Module``s have their ``state_dict`` saved as safetensors too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import torch
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from .attention.masks import JointAttentionMask
    from .backends.base import Backend
    from .conditions import ConditionSet
    from .types import Plan, Request


class ConditionEncoder(ABC):
    """Turns a request into condition streams (text encoder, MLLM, VAE references...).

    ``reads_prompt``: set it to False on an encoder whose output depends only on the
    subjects (VAE references, image encoders), so the pipeline encodes once and shares the
    result across candidates with different prompt rewrites and the negative prompt.
    """

    reads_prompt: bool = True

    @abstractmethod
    def encode(self, request: "Request", backend: "Backend") -> "ConditionSet":
        """Streams for one request, batch size 1; the pipeline repeats them per image."""


class Aggregator(ABC):
    """Rewrites a condition set: pools raw features into a stream, edits tokens in place..."""

    @abstractmethod
    def aggregate(self, conditions: "ConditionSet", request: "Request") -> "ConditionSet":
        """A new condition set; the input must not be modified."""


class AttentionRule(ABC):
    """Adds constraints to the joint attention mask of one denoising pass.

    Rules can only block pairs or add bias; no rule can unblock what another blocked.
    """

    @abstractmethod
    def apply(self, mask: "JointAttentionMask", conditions: "ConditionSet", request: "Request") -> None:
        """Edit ``mask`` through its ``block``/``restrict_keys``/``add_bias`` methods."""


class DenoisingSchedule(ABC):
    """The sigma schedule and, per step, a weight for each stream.

    A weight of 0 masks the stream's keys out for that step; a weight ``w > 0`` adds
    ``log(w)`` to the attention logits of its keys (1 leaves it unchanged).
    """

    def sigmas(self, num_inference_steps: int) -> list[float] | None:
        """Custom sigmas before the backend's resolution shift, or None for the backend default."""
        return None

    @abstractmethod
    def stream_weights(self, step: int, num_steps: int, conditions: "ConditionSet") -> dict[str, float]:
        """Weight per stream name at step ``step`` (0-based); names left out get weight 1."""


class Planner(ABC):
    """Writes plans (chain of thought, layout, prompt rewrite) for a request."""

    @abstractmethod
    def plan(self, request: "Request", num_plans: int, generator: torch.Generator | None = None) -> list["Plan"]:
        """``num_plans`` plans for the request."""


class Verifier(ABC):
    """Scores generated candidates so the best can be kept (higher is better)."""

    @abstractmethod
    def score(self, images: list[Image.Image], request: "Request", plans: list["Plan"] | None = None) -> list[float]:
        """One score per image."""


@runtime_checkable
class SceneJudge(Protocol):
    """Rates images on named criteria, higher = better (registered with ``registry.add_judge``).

    For example ``{"identity": 0.9, "instruction": 1.0, "omitted": 0.0, "layout": 0.8}``. An
    oracle that knows every fact of the scene it asked for (SubjectWorld's) is the intended
    implementation; the ``scene-judge`` verifier ranks candidates by a weighted sum.
    """

    def judge(
        self, images: Sequence[Image.Image], request: "Request", plans: Sequence["Plan"] | None
    ) -> list[dict[str, float]]:
        ...


def component_config(component: Any) -> dict[str, Any]:
    """The config a component was built with (recorded by the registry), or {}."""
    return dict(getattr(component, "smg_config", {}) or {})


def component_name(component: Any) -> str | None:
    """The registered name a component was built under, or None if it was built by hand."""
    return getattr(component, "smg_name", None)
