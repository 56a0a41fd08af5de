"""Errors raised by smg-sdk.

Every error a user can cause is an :class:`SMGError` subclass whose message says what was
wrong and what to do about it, so callers can catch one type and show one line.
"""

from __future__ import annotations


class SMGError(Exception):
    """Base class of every error smg-sdk raises on purpose."""


class RequestError(SMGError, ValueError):
    """A generation request is malformed (size, steps, placeholders, subjects...)."""


class ConditionError(SMGError, ValueError):
    """Condition streams are inconsistent (shapes, names, sides, metadata)."""


class AttentionRuleError(SMGError, ValueError):
    """Attention rules produced an unusable mask (unknown group, a query with no key)."""


class ScheduleError(SMGError, ValueError):
    """A denoising schedule's parameters are invalid."""


class PlanError(SMGError, ValueError):
    """A plan is malformed (layout not a 2-D grid of non-negative integers, ids out of range...)."""


class PluginError(SMGError):
    """A plugin failed to load or register, or two plugins claim the same name."""


class RegistryError(SMGError, KeyError):
    """A component name is not registered (or is registered twice)."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class DataError(SMGError, ValueError):
    """Data given to a data set, an evaluator or a test-data strategy is malformed or out of range
    (a SubjectWorld identity, scene or instruction, an image the oracle cannot read...)."""


class DataLookupError(SMGError, KeyError):
    """A data set has no item of the given name; the message lists the names it has."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ModelLoadError(SMGError, OSError):
    """A model folder or weights file is missing or does not match what was expected."""


class WeightsMismatchError(ModelLoadError):
    """Saved weights do not match the manifest or the model they are loaded into."""


class BackendError(SMGError, RuntimeError):
    """The diffusion backend cannot run the given conditions."""


class ConfigError(SMGError, ValueError):
    """A settings object (e.g. :class:`~smg_sdk.training.TrainerConfig`) has an invalid value."""


class PlacementError(SMGError, RuntimeError):
    """A pipeline's models are not where they must be (mixed devices, moving modules that offload hooks manage)."""
