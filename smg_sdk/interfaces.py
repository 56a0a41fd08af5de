"""The contracts plugins implement. The core calls these and knows nothing else about them.

Every interface is :class:`~smg_sdk.configurable.Configurable`: a component records the options
its constructor was called with (``smg_config``) when it is built, by the registry
(``factory(**config)``, which also records ``smg_name``) or by hand, so any component whose
class is registered saves and reloads. Components that are ``torch.nn.Module``s have their
``state_dict`` saved as safetensors too.

**Declared contracts.** What a component needs from the condition set and what it adds is
declared with class attributes, checked when a pipeline is composed
(:func:`smg_sdk.contracts.check_composition`), so a mis-composed pipeline fails at
``compose`` naming the component that needs and those that could have provided:

- ``needs_streams`` / ``makes_streams`` / ``drops_streams``: tuples of
  :class:`~smg_sdk.contracts.StreamSpec` (or plain names): streams that must exist before the
  component runs, that it adds, that it removes. Names may be templates of the component's
  attributes (``StreamSpec("{stream}", side="raw")``) or prefixes (``"ref*"``). A stream
  rewritten in place is needed, not made.
- ``needs_meta`` / ``reads_meta`` / ``writes_meta``: tuples of ``ConditionSet.meta`` keys that
  must be present, that are read when present, that are written.

Each attribute defaults to None, "not declared": an undeclared need is not checked and an
undeclared output may be anything, so components written without declarations keep working.
Which attributes a kind declares: encoders ``makes_streams``, ``writes_meta``; aggregators
all six; rules and schedules ``needs_streams``, ``needs_meta``, ``reads_meta``. Planners write
``meta["plan"]``/``meta["plans"]`` (through the pipeline); verifiers read no condition set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence, runtime_checkable

import torch
from PIL import Image

from .configurable import Configurable, captured_config

if TYPE_CHECKING:  # pragma: no cover
    from .attention.masks import JointAttentionMask
    from .backends.base import Backend
    from .conditions import ConditionSet
    from .contracts import StreamSpec
    from .types import Plan, Request

    Streams = tuple[StreamSpec | str, ...] | None
    Keys = tuple[str, ...] | None


class ConditionEncoder(Configurable, ABC):
    """Turns a request into condition streams (text encoder, MLLM, VAE references...).

    ``reads_prompt``: set it to False on an encoder whose output depends only on the
    subjects (VAE references, image encoders), so the pipeline encodes once and shares the
    result across candidates with different prompt rewrites and the negative prompt.
    """

    reads_prompt: bool = True
    makes_streams: ClassVar[Streams] = None
    """Streams ``encode`` returns (e.g. ``(StreamSpec("{stream_name}", side="text"),)``); None: undeclared."""
    writes_meta: ClassVar[Keys] = None
    """``meta`` keys ``encode`` writes (e.g. ``("subject_tokens",)``); None: undeclared."""

    @abstractmethod
    def encode(self, request: "Request", backend: "Backend") -> "ConditionSet":
        """Streams for one request, batch size 1; the pipeline repeats them per image."""


class Aggregator(Configurable, ABC):
    """Rewrites a condition set: pools raw features into a stream, edits tokens in place...

    Declares (each None = undeclared): ``needs_streams`` (must exist when it runs),
    ``makes_streams`` (added), ``drops_streams`` (removed, e.g. the raw stream it consumed),
    ``needs_meta`` (keys that must be present), ``reads_meta`` (read when present),
    ``writes_meta`` (written).
    """

    needs_streams: ClassVar[Streams] = None
    makes_streams: ClassVar[Streams] = None
    drops_streams: ClassVar[Streams] = None
    needs_meta: ClassVar[Keys] = None
    reads_meta: ClassVar[Keys] = None
    writes_meta: ClassVar[Keys] = None

    @abstractmethod
    def aggregate(self, conditions: "ConditionSet", request: "Request") -> "ConditionSet":
        """A new condition set; the input must not be modified."""


class AttentionRule(Configurable, ABC):
    """Adds constraints to the joint attention mask of one denoising pass.

    Rules can only block pairs or add bias; no rule can unblock what another blocked.
    Declares (each None = undeclared): ``needs_streams``, ``needs_meta``, ``reads_meta``,
    checked against the condition set after every aggregator.
    """

    needs_streams: ClassVar[Streams] = None
    needs_meta: ClassVar[Keys] = None
    reads_meta: ClassVar[Keys] = None

    @abstractmethod
    def apply(self, mask: "JointAttentionMask", conditions: "ConditionSet", request: "Request") -> None:
        """Edit ``mask`` through its ``block``/``restrict_keys``/``add_bias`` methods."""


class DenoisingSchedule(Configurable, ABC):
    """The sigma schedule and, per step, a weight for each stream.

    A weight of 0 masks the stream's keys out for that step; a weight ``w > 0`` adds
    ``log(w)`` to the attention logits of its keys (1 leaves it unchanged).
    Declares (each None = undeclared): ``needs_streams``, ``needs_meta``, ``reads_meta``.
    """

    needs_streams: ClassVar[Streams] = None
    needs_meta: ClassVar[Keys] = None
    reads_meta: ClassVar[Keys] = None

    def sigmas(self, num_inference_steps: int) -> list[float] | None:
        """Custom sigmas before the backend's resolution shift, or None for the backend default."""
        return None

    @abstractmethod
    def stream_weights(self, step: int, num_steps: int, conditions: "ConditionSet") -> dict[str, float]:
        """Weight per stream name at step ``step`` (0-based); names left out get weight 1."""


class Planner(Configurable, ABC):
    """Writes plans (chain of thought, layout, prompt rewrite) for a request.

    The pipeline puts each candidate's plan in ``meta["plan"]`` (one per row in
    ``meta["plans"]``), which ``writes_meta`` declares. ``suggested_rules`` and
    ``suggested_verifier`` name registered components the plans need to act (``smg generate
    --planner`` adds the ones a pipeline lacks).
    """

    writes_meta: ClassVar[Keys] = ("plan", "plans")
    suggested_rules: ClassVar[tuple[str, ...]] = ()
    suggested_verifier: ClassVar[str | None] = None

    @abstractmethod
    def plan(self, request: "Request", num_plans: int, generator: torch.Generator | None = None) -> list["Plan"]:
        """``num_plans`` plans for the request."""


class Verifier(Configurable, ABC):
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
    """The options a component was built with (captured at construction or recorded by the registry), or {}."""
    return captured_config(component) or {}


def component_name(component: Any, kind: str | None = None) -> str | None:
    """The registered name of a component, or None.

    That is the name the registry built it under, else (built by hand) the one name its class
    is registered under (of ``kind``, or of any kind when None); None when the class is not
    registered, or is registered under several names.
    """
    name = getattr(component, "smg_name", None)
    if name is not None:
        return name
    from .plugins.manager import get_registry
    from .plugins.registry import KINDS

    registry = get_registry()
    kinds = [kind] if kind is not None else [k for k in KINDS if k not in ("preset", "recipe")]  # not components
    names = [n for k in kinds for n in registry.names_of(k, type(component))]
    return names[0] if len(names) == 1 else None
