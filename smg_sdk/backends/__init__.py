"""Diffusion backends: the :class:`Backend` contract, and FLUX's implementation in :mod:`.flux`."""

from .base import Backend

__all__ = ["Backend"]
