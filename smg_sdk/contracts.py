"""Declared stream and metadata contracts, checked when a pipeline is composed.

A component declares, as class attributes (see :mod:`smg_sdk.interfaces`), which condition
streams it needs, makes and drops, and which ``ConditionSet.meta`` keys it needs, reads and
writes. :func:`check_composition` walks a pipeline in the order it runs (encoders, then the
planner's plans, then each aggregator, then the rules and the schedule) and fails at compose
time, naming the component that needs something and the components that could have provided
it, instead of deep inside ``aggregate``.

Declarations are optional, attribute by attribute: ``None`` (the interfaces' default) means
"not declared". An undeclared need is not checked, and a component whose outputs are
undeclared may provide anything, so nothing after it is reported missing. Components
written before contracts existed keep working unchanged.

Stream names may be exact (``"mllm-raw"``), a prefix pattern (``"ref*"``: ``ref1``, ``ref2``...),
or a template filled from the component's attributes (``"{stream}"``, ``"{prefix}*"``), so a
declaration follows the component's options. A declaration that depends on an option in
another way is a property of the class returning the tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any, Callable, Iterable, Sequence

from .errors import ConditionError, PluginError

SIDES = ("text", "reference", "raw")
STREAM_ATTRS = ("needs_streams", "makes_streams", "drops_streams")
META_ATTRS = ("needs_meta", "reads_meta", "writes_meta")
DECLARES = {
    "encoder": ("makes_streams", "writes_meta"),
    "aggregator": (*STREAM_ATTRS, *META_ATTRS),
    "rule": ("needs_streams", "needs_meta", "reads_meta"),
    "schedule": ("needs_streams", "needs_meta", "reads_meta"),
}
"""The contract attributes each kind of component declares (planners and verifiers read no streams)."""


def _is_template(text: str) -> bool:
    return any(field is not None for _, field, _, _ in Formatter().parse(text))


def _fill(text: str, value_of: Callable[[str], Any], component: Any) -> str:
    """``text`` with each ``{field}`` replaced by ``value_of(field)``, which must be a string."""
    values = {}
    for _, field, _, _ in Formatter().parse(text):
        if field is None:
            continue
        value = value_of(field)
        if not isinstance(value, str):
            owner = _label(component) if component is not None else "a component"
            raise PluginError(f"{owner} declares stream {text!r}, but its attribute {field!r} is "
                              f"{type(value).__name__}, not a string; fix the declaration or the attribute.")
        values[field] = value
    return text.format(**values)


class CompositionError(ConditionError):
    """A pipeline's components do not fit together: one needs a stream or meta key none provides."""


@dataclass(frozen=True)
class StreamSpec:
    """A condition stream a component needs, makes or drops: by name, by side, or both.

    ``name``: an exact name, a prefix pattern ending in ``*``, a template such as
    ``"{stream}"`` filled from the component's attribute of that name, or None (any name).
    ``side``: ``"text"``, ``"reference"``, ``"raw"``, a template such as ``"{side}"``, or None
    (any side).
    """

    name: str | None = None
    side: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "*" in self.name[:-1]):
            raise PluginError(f"StreamSpec name {self.name!r} must be a non-empty name, with '*' only at the end.")
        if self.side is not None and self.side not in SIDES and not _is_template(self.side):
            raise PluginError(f"StreamSpec side {self.side!r} must be one of {', '.join(SIDES)}, a template or None.")

    def resolve(self, component: Any) -> "StreamSpec":
        """This spec with ``{attribute}`` templates filled from ``component``'s attributes."""
        def fill(text: str | None) -> str | None:
            return None if text is None else _fill(text, lambda field: getattr(component, field, None), component)

        return StreamSpec(fill(self.name), fill(self.side))

    def with_defaults(self, defaults: dict[str, Any]) -> "StreamSpec":
        """This spec with templates filled from a constructor's default arguments (for suggestions)."""
        def fill(text: str | None) -> str | None:
            return None if text is None else _fill(text, defaults.get, None)

        return StreamSpec(fill(self.name), fill(self.side))

    def overlaps(self, other: "StreamSpec") -> bool:
        """Whether a stream could match both specs."""
        if self.side is not None and other.side is not None and self.side != other.side:
            return False
        if self.name is None or other.name is None:
            return True
        a, b = self.name.rstrip("*"), other.name.rstrip("*")
        if self.name.endswith("*") and other.name.endswith("*"):
            return a.startswith(b) or b.startswith(a)
        if self.name.endswith("*"):
            return other.name.startswith(a)
        if other.name.endswith("*"):
            return self.name.startswith(b)
        return self.name == other.name

    def covers(self, other: "StreamSpec") -> bool:
        """Whether every stream ``other`` matches also matches this spec (for drops)."""
        if self.side is not None and other.side != self.side:
            return False
        if self.name is None:
            return True
        if other.name is None:
            return False
        if self.name.endswith("*"):
            return other.name.startswith(self.name[:-1])
        return other.name == self.name

    def describe(self) -> str:
        side = f"{self.side} " if self.side else ""
        if self.name is None:
            return f"a {side}stream"
        plural = "streams" if self.name.endswith("*") else "stream"
        return f"{side}{plural} {self.name!r}"


def _label(component: Any) -> str:
    """``"aggregator 'dla' (DualLayerAggregation)"`` or the class name alone when unnamed."""
    from .interfaces import component_name

    kind = _kind_of(component)
    try:
        name = component_name(component, kind)
    except Exception:  # noqa: BLE001 - a label must never fail
        name = None
    cls = type(component).__name__
    return f"{kind} {name!r} ({cls})" if name else f"{kind} {cls}"


def _kind_of(component: Any) -> str:
    from . import interfaces

    for kind, base in (("encoder", interfaces.ConditionEncoder), ("aggregator", interfaces.Aggregator),
                       ("rule", interfaces.AttentionRule), ("schedule", interfaces.DenoisingSchedule),
                       ("planner", interfaces.Planner), ("verifier", interfaces.Verifier)):
        if isinstance(component, base):
            return kind
    return "component"


def declared_streams(component: Any, attr: str) -> tuple[StreamSpec, ...] | None:
    """``component``'s ``attr`` (``needs_streams``...) as resolved specs, or None if undeclared."""
    value = getattr(component, attr, None)
    if value is None:
        return None
    if isinstance(value, (str, StreamSpec)) or not isinstance(value, Iterable):
        raise PluginError(f"{_label(component)} declares {attr} as {value!r}; declare a tuple of StreamSpec or names.")
    specs = []
    for item in value:
        spec = StreamSpec(item) if isinstance(item, str) else item
        if not isinstance(spec, StreamSpec):
            raise PluginError(f"{_label(component)} declares {attr} with {item!r}; use StreamSpec(...) or a name.")
        specs.append(spec.resolve(component))
    return tuple(specs)


def declared_keys(component: Any, attr: str) -> tuple[str, ...] | None:
    """``component``'s ``attr`` (``needs_meta``...) as a tuple of keys, or None if undeclared."""
    value = getattr(component, attr, None)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable) or not all(isinstance(k, str) for k in value):
        raise PluginError(f"{_label(component)} declares {attr} as {value!r}; declare a tuple of meta key names.")
    return tuple(value)


@dataclass
class _Provided:
    """What is known to be in the condition set at one point of the pipeline, and by whom."""

    streams: list[tuple[StreamSpec, Any]]
    meta: set[str]
    dropped: list[tuple[StreamSpec, Any]]
    upstream: list[Any]
    streams_unknown: bool = False
    meta_unknown: bool = False

    def add(self, component: Any, can_make: bool = True) -> None:
        self.upstream.append(component)
        makes = declared_streams(component, "makes_streams") if can_make else ()
        writes = declared_keys(component, "writes_meta")
        if makes is None:
            self.streams_unknown = True
        for spec in makes or ():
            self._check_unique(component, spec)
            self.streams.append((spec, component))
        if writes is None:
            self.meta_unknown = True
        self.meta.update(writes or ())

    def _check_unique(self, component: Any, spec: StreamSpec) -> None:
        for other, owner in self.streams:
            if spec.name is not None and spec.name == other.name:
                raise CompositionError(
                    f"{_label(component)} and {_label(owner)} both make {spec.describe()}; two streams may not share "
                    f"a name. Give one of them another stream name (its stream/prefix option)."
                )

    def drop(self, component: Any) -> None:
        for spec in declared_streams(component, "drops_streams") or ():
            kept = [(s, owner) for s, owner in self.streams if not spec.covers(s)]
            self.dropped += [(s, component) for s, owner in self.streams if spec.covers(s)]
            self.streams = kept


def _providers(provided: _Provided) -> str:
    lines = []
    for component in provided.upstream:
        if _kind_of(component) == "planner":
            continue
        what = ", ".join(s.describe() for s in declared_streams(component, "makes_streams") or ()) or "no stream"
        lines.append(f"{_label(component)} makes {what}")
    return "; ".join(lines) if lines else "no component runs before it"


def _suggest(kinds: Sequence[str], need: StreamSpec, component: Any) -> str:
    """A sentence naming the registered components whose declared defaults make a stream matching ``need``."""
    import inspect

    from .plugins.manager import get_registry

    registry, found = get_registry(), []
    for kind in kinds:
        for name in registry.names(kind):
            factory = registry.get(kind, name)
            if not isinstance(factory, type) or isinstance(getattr(factory, "makes_streams", None), property):
                continue
            try:
                defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()
                            if p.default is not inspect.Parameter.empty}
                makes = [StreamSpec(s) if isinstance(s, str) else s for s in getattr(factory, "makes_streams", None) or ()]
                made = [s.with_defaults(defaults) for s in makes]
            except (ValueError, TypeError, AttributeError, PluginError):
                continue
            if any(m.overlaps(need) for m in made):
                found.append(f"the {kind} {name!r}")
    if not found:
        return ""
    providers = " or ".join(found)
    return f" {providers[0].upper()}{providers[1:]} makes it: add it to the pipeline before {_label(component)}."


def _check_stream_needs(component: Any, provided: _Provided) -> None:
    for need in declared_streams(component, "needs_streams") or ():
        if provided.streams_unknown or any(need.overlaps(s) for s, _ in provided.streams):
            continue
        removed = [owner for s, owner in provided.dropped if need.overlaps(s)]
        if removed:
            raise CompositionError(
                f"{_label(component)} needs {need.describe()}, but {_label(removed[0])} removes it before it runs; "
                f"put {_label(component)} before {_label(removed[0])}."
            )
        raise CompositionError(
            f"{_label(component)} needs {need.describe()}, which no component before it makes ({_providers(provided)})."
            + _suggest(("encoder", "aggregator"), need, component)
        )


def _check_meta_needs(component: Any, provided: _Provided) -> None:
    for key in declared_keys(component, "needs_meta") or ():
        if provided.meta_unknown or key in provided.meta:
            continue
        writers = "; ".join(f"{_label(c)} writes {', '.join(declared_keys(c, 'writes_meta') or ()) or 'no key'}"
                            for c in provided.upstream)
        raise CompositionError(
            f"{_label(component)} needs conditions.meta[{key!r}], which no component before it writes "
            f"({writers or 'no component runs before it'}). Add the component that writes it (see its docs)."
        )


def check_composition(
    encoders: Sequence[Any],
    aggregators: Sequence[Any] = (),
    rules: Sequence[Any] = (),
    schedule: Any = None,
    planner: Any = None,
    verifier: Any = None,
) -> None:
    """Raise :class:`CompositionError` if a declared need is met by no component before it.

    Runs in pipeline order: every encoder's declared streams and meta keys, the plan keys
    the pipeline writes when there is a ``planner`` (its ``writes_meta``), then each aggregator
    (its needs checked, then its drops and makes applied), then the rules and the schedule
    against the final set. Two declared makers of one exact stream name are an error too.
    ``verifier`` reads images and plans only; it is accepted so callers pass the whole pipeline.
    A malformed declaration is a :class:`~smg_sdk.errors.PluginError` naming the component.
    """
    del verifier  # verifiers declare nothing: they score images, not condition sets
    provided = _Provided([], set(), [], [])
    for encoder in encoders:
        provided.add(encoder)
    if planner is not None:  # the pipeline writes its plans into meta (Planner.writes_meta)
        provided.add(planner, can_make=False)
    for aggregator in aggregators:
        _check_stream_needs(aggregator, provided)
        _check_meta_needs(aggregator, provided)
        provided.drop(aggregator)
        provided.add(aggregator)
    for component in [*rules, *([schedule] if schedule is not None else [])]:
        _check_stream_needs(component, provided)
        _check_meta_needs(component, provided)


__all__ = ["CompositionError", "DECLARES", "StreamSpec", "check_composition", "declared_keys",
           "declared_streams"]
