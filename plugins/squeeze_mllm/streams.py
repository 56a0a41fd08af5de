"""The names of the streams Squeeze-MLLM's encoder writes and its aggregators read."""

from __future__ import annotations

RAW_STREAM = "mllm-raw"
"""The encoder's raw layer features (side ``"raw"``); the DLA / LAP aggregators read it."""

OUT_STREAM = "mllm"
"""The aggregators' text-side conditioning stream."""

__all__ = ["OUT_STREAM", "RAW_STREAM"]
