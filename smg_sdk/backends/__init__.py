"""Diffusion backends. ``FluxBackend`` wraps diffusers' FLUX components."""

from .base import Backend
from .flux import CachedReferenceOptions, DenoiseResult, FluxBackend

__all__ = ["Backend", "CachedReferenceOptions", "DenoiseResult", "FluxBackend"]
