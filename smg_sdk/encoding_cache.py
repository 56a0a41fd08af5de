"""A bounded LRU cache of condition-encoder outputs, so repeated references skip the encoders.

A request that repeats reference images (the same subjects with another prompt or seed, a
retry, a gallery of variations) would run the VAE, MLLM or Redux on the same pixels again.
:class:`EncodingCache` keeps the last ``max_entries`` encoder outputs and returns a copy of one
when everything an encoder could read is the same:

- **the inputs**: a SHA-256 of every subject's RGB pixels (with its size), its class word and
  index, the request's ``height``, ``width`` and ``size_multiple``; and, unless the encoder
  declares ``reads_prompt = False``, the ``prompt`` and ``negative_prompt``. Seeds, steps and
  guidance never reach an encoder (:class:`~smg_sdk.interfaces.ConditionEncoder` gets the
  request only to read its conditioning), so requests that differ only there share entries;
- **the encoder, the backend and their settings**: each object itself (held by a weak
  reference, so a new object never inherits an old one's entries) and every public attribute of
  it holding a plain value (``mode``, ``position``, ``adapter``, ``reference_scale``...; the
  backend's ``max_sequence_length``), read at call time, so changing an option after
  construction is a miss;
- **the weights**: every parameter and buffer of the backend's encoding modules
  (``backend.encoding_modules()``: VAE, CLIP, T5) and of the modules the encoder holds (up to
  two attributes deep: an MLLM wrapper's model, SigLIP + Redux), each by identity, device,
  dtype and in-place version counter (``Tensor._version``, bumped by optimizer steps and
  ``load_state_dict``), plus any peft adapter's active set and scaling. Training or loading
  weights therefore invalidates the entries that used them.

Nothing is cached while autograd records (training encodes with gradients) or while any of
those modules is in training mode (dropout makes outputs random). Entries and returned values
are deep copies, so a caller editing a returned condition set never changes the cache.
The pipeline owns one (``SubjectPipeline(encoding_cache=...)``, on by default).
"""

from __future__ import annotations

import copy
import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import torch

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .conditions import ConditionSet
    from .interfaces import ConditionEncoder
    from .types import Request

_PLAIN = (type(None), bool, int, float, str)


@dataclass
class _Entry:
    refs: list[weakref.ref]  # the encoder, the backend and every tensor of the key, in key order
    value: "ConditionSet"


@dataclass
class EncodingCache:
    """LRU of encoder outputs keyed by inputs, encoder settings and weights (see the module docstring).

    ``max_entries`` (>= 1) bounds the number of kept outputs; ``hits`` and ``misses`` count
    lookups since construction (or :meth:`clear`). Raises :class:`~smg_sdk.errors.ConfigError`
    for a bad ``max_entries``.
    """

    max_entries: int = 32
    hits: int = 0
    misses: int = 0
    _entries: "OrderedDict[tuple, _Entry]" = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_entries, bool) or not isinstance(self.max_entries, int) or self.max_entries < 1:
            raise ConfigError(f"encoding cache max_entries must be a whole number >= 1, got {self.max_entries!r}; "
                              "pass encoding_cache=False to turn the cache off.")

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        self._entries.clear()
        self.hits = self.misses = 0

    def encode(self, encoder: "ConditionEncoder", request: "Request", backend: Any) -> "ConditionSet":
        """``encoder.encode(request, backend)``, or a copy of the cached result of an identical call."""
        modules = _modules(encoder, backend)
        if torch.is_grad_enabled() or any(m.training for m in modules):
            return encoder.encode(request, backend)
        tensors = [t for m in modules for t in _tensors(m)]
        key = (_settings(encoder), _settings(backend), _inputs(request, getattr(encoder, "reads_prompt", True)),
               _weights(tensors, modules))
        owners = [encoder, backend, *tensors]
        entry = self._entries.get(key)
        if entry is not None and all(ref() is obj for ref, obj in zip(entry.refs, owners)):
            self._entries.move_to_end(key)
            self.hits += 1
            return copy.deepcopy(entry.value)
        self.misses += 1
        value = encoder.encode(request, backend)
        try:
            self._entries[key] = _Entry([weakref.ref(o) for o in owners], copy.deepcopy(value))
        except (TypeError, RuntimeError, copy.Error):  # an owner without weak references, an uncopyable value
            return value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value


def as_encoding_cache(option: "EncodingCache | bool | None") -> EncodingCache | None:
    """The pipeline's ``encoding_cache`` option: True -> a new cache, False/None -> none, a cache -> itself."""
    if option is True:
        return EncodingCache()
    if option is False or option is None:
        return None
    if isinstance(option, EncodingCache):
        return option
    raise ConfigError(f"encoding_cache must be True, False or an EncodingCache, got {option!r}.")


def pixel_digest(image: Any) -> str:
    """SHA-256 (hex) of an RGB PIL image's size and pixels."""
    digest = hashlib.sha256(f"{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _inputs(request: "Request", reads_prompt: bool) -> tuple:
    subjects = tuple((pixel_digest(s.pil()), s.class_word, s.index) for s in request.subjects)
    prompt = (request.prompt, request.negative_prompt) if reads_prompt else None
    return subjects, request.height, request.width, request.size_multiple, prompt


def _settings(component: Any) -> tuple:
    """An encoder's (or backend's) class, identity and public plain-valued attributes (read now)."""
    plain = tuple(sorted((k, repr(v)) for k, v in vars(component).items()
                         if not k.startswith("_") and _is_plain(v)))
    return type(component).__module__, type(component).__qualname__, id(component), plain


def _is_plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _modules(encoder: Any, backend: Any) -> list[torch.nn.Module]:
    """The backend's encoding modules and the modules the encoder holds (two attributes deep), once each."""
    found: dict[int, torch.nn.Module] = {}
    encoding = getattr(backend, "encoding_modules", None)
    for module in (encoding() if callable(encoding) else []):
        if isinstance(module, torch.nn.Module):
            found.setdefault(id(module), module)
    for module in _held_modules(encoder, depth=2):
        found.setdefault(id(module), module)
    return list(found.values())


def _held_modules(obj: Any, depth: int) -> Iterator[torch.nn.Module]:
    if isinstance(obj, torch.nn.Module):
        yield obj
        return
    if depth == 0 or not hasattr(obj, "__dict__"):
        return
    for value in vars(obj).values():
        if isinstance(value, torch.nn.Module) or (depth > 1 and hasattr(value, "__dict__") and not isinstance(value, type)):
            yield from _held_modules(value, depth - 1)


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *(b for b in module.buffers() if b is not None)]


def _weights(tensors: list[torch.Tensor], modules: list[torch.nn.Module]) -> tuple:
    """Each tensor's identity, device, dtype and version counter, and every peft layer's active adapters and scaling."""
    state = tuple((id(t), str(t.device), str(t.dtype), t._version) for t in tensors)
    adapters = tuple(
        (repr(getattr(layer, "active_adapters", None)), repr(sorted(layer.scaling.items())), bool(getattr(layer, "disable_adapters", False)))
        for m in modules for layer in m.modules() if isinstance(getattr(layer, "scaling", None), dict)
    )
    return state, adapters


__all__ = ["EncodingCache", "as_encoding_cache", "pixel_digest"]
