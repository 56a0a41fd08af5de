"""Training samples: reference subjects, an instruction, and the target image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import RequestError
from ..types import Subject


@dataclass
class TrainingSample:
    """One (references, instruction, target) tuple; ``extras`` carries method data (CoT, layout...).

    ``loss_weights``: optional ``(rows, cols)`` grid of non-negative weights over the target
    image (any grid size; the trainer averages it onto the latent token grid), e.g. higher
    inside the subjects' regions; None weighs every token the same. ``prompt`` may be ``""``
    (caption dropout): the sample then trains the empty-prompt branch that true CFG subtracts.
    """

    subjects: list[Subject]
    prompt: str
    target: Image.Image
    extras: dict[str, Any] = field(default_factory=dict)
    loss_weights: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, Image.Image):
            raise RequestError(f"TrainingSample.target must be a PIL image, got {type(self.target).__name__}.")
        self.subjects = [s if isinstance(s, Subject) else Subject(s) for s in self.subjects]
        if self.loss_weights is not None:
            self.loss_weights = _check_weights(self.loss_weights)


def _check_weights(weights: Any) -> np.ndarray:
    grid = np.asarray(weights, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0 or not np.isfinite(grid).all() or (grid < 0).any() or grid.sum() <= 0:
        raise RequestError("TrainingSample.loss_weights must be a non-empty (rows, cols) grid of finite weights "
                           f">= 0 that are not all 0; got shape {grid.shape}.")
    return grid
