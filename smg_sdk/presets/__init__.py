"""Model presets shipped inside the package.

``tiny``: a diffusers-format FLUX folder at tiny sizes (:mod:`smg_sdk.presets.tiny`).
"""

from __future__ import annotations

from .tiny import TINY_DEFAULTS, TINY_FLUX_PATH, tiny_flux_path

__all__ = ["TINY_DEFAULTS", "TINY_FLUX_PATH", "tiny_flux_path"]
