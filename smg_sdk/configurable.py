"""Components capture the options they were built with, as diffusers' ``register_to_config`` does.

Every component interface (:mod:`smg_sdk.interfaces`) derives from :class:`Configurable`, so
a component class records its constructor's arguments *when it is constructed*, whether the
registry builds it by name or someone builds it by hand (``MyAggregator(width=8)``). What
is recorded is what a saved pipeline's manifest stores and what rebuilds the component:

- ``component.smg_config``: the options the constructor was called with, by parameter name
  (positional arguments named, ``**kwargs`` flattened, defaults not filled in, parameters
  listed in the class attribute ``ignore_for_config`` left out);
- ``component.smg_name``: the registered name, recorded by the registry when it builds one;
  a hand-built component's name is looked up from its class at save time (the class must be
  registered under exactly one name of its kind; a manifest names components, never modules).

A component that changes one of its options after construction says so with
:meth:`Configurable.register_to_config`, as diffusers components do, so what is saved never
drifts from what the component does. Components that do not derive from the interfaces
(duck-typed, registered as factories) get both attributes from the registry, as before.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, ClassVar

CONFIG_ATTR = "smg_config"
"""Attribute holding a component's options (a dict of JSON values when it is to be saved)."""

NAME_ATTR = "smg_name"
"""Attribute the registry sets to the name it built a component under."""

_UNCAPTURABLE_ATTR = "_smg_uncapturable"
_CAPTURES = "_smg_captures_config"


class Configurable:
    """Mixin: a subclass's constructor arguments are recorded in ``self.smg_config``.

    ``ignore_for_config``: names of constructor parameters that are not options (a loaded
    model passed in to share it, say); they are never recorded or saved.
    """

    ignore_for_config: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, _CAPTURES, False):
            cls.__init__ = _capturing(init)  # type: ignore[method-assign]

    def register_to_config(self, **options: Any) -> None:
        """Record ``options`` as this component's (replacing earlier values of the same names).

        Call it when a component changes an option after construction (as diffusers'
        ``register_to_config``), so a saved pipeline rebuilds the component as it now is.
        """
        config = dict(getattr(self, CONFIG_ATTR, None) or {})
        config.update({k: _detached(v) for k, v in options.items() if k not in type(self).ignore_for_config})
        _store(self, config)


def _capturing(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` wrapped to record its arguments first, when it is the constructor of the object's class."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if type(self).__init__ is __init__:  # the outermost constructor; a super().__init__ call records nothing
            _capture(self, signature, args, kwargs)
        init(self, *args, **kwargs)

    setattr(__init__, _CAPTURES, True)
    return __init__


def _capture(component: Any, signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> None:
    try:
        bound = signature.bind(component, *args, **kwargs)
    except TypeError:
        return  # the constructor itself raises the TypeError that says what is wrong
    ignored = set(type(component).ignore_for_config)
    options: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                component.__dict__[_UNCAPTURABLE_ATTR] = f"it was given {len(value)} extra positional argument(s)"
        elif kind is inspect.Parameter.VAR_KEYWORD:
            options.update(value)
        else:
            options[name] = value
    _store(component, {k: _detached(v) for k, v in options.items() if k not in ignored})


def _store(component: Any, config: dict[str, Any]) -> None:
    # Straight into __dict__: it runs before the constructor (torch.nn.Module's __setattr__ is not ready yet).
    component.__dict__[CONFIG_ATTR] = config


def _detached(value: Any) -> Any:
    """``value`` with its plain containers copied, so the caller's later edits do not change the config."""
    if type(value) is dict:
        return {k: _detached(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_detached(v) for v in value)
    return value


def captured_config(component: Any) -> dict[str, Any] | None:
    """The options ``component`` was built with, or None when it never recorded any."""
    config = getattr(component, CONFIG_ATTR, None)
    return None if config is None else dict(config)


def uncapturable_reason(component: Any) -> str | None:
    """Why the recorded options cannot rebuild ``component`` (e.g. it took ``*args``), or None."""
    return getattr(component, "__dict__", {}).get(_UNCAPTURABLE_ATTR)


def takes_no_options(cls: type) -> bool:
    """Whether ``cls()`` takes no arguments at all (so its options are exactly ``{}``)."""
    try:
        return not inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["CONFIG_ATTR", "Configurable", "NAME_ATTR", "captured_config", "takes_no_options", "uncapturable_reason"]
