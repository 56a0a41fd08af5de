"""The core's denoising schedules."""

from __future__ import annotations

from .conditions import ConditionSet
from .errors import ScheduleError
from .interfaces import DenoisingSchedule


class ConstantSchedule(DenoisingSchedule):
    """FLUX's own sigmas and a fixed weight per stream (default 1 for all; streams absent from a request are skipped)."""

    needs_streams = needs_meta = reads_meta = ()

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = dict(weights or {})
        for name, w in self.weights.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ScheduleError(f"Weight for stream {name!r} is {w!r}; weights must be numbers >= 0.")

    def stream_weights(self, step: int, num_steps: int, conditions: ConditionSet) -> dict[str, float]:
        return {name: w for name, w in self.weights.items() if name in conditions}
