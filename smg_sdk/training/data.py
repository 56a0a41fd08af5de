"""Training samples: reference subjects, an instruction, and the target image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..errors import RequestError
from ..types import Subject


@dataclass
class TrainingSample:
    """One (references, instruction, target) tuple; ``extras`` carries method data (CoT, layout...)."""

    subjects: list[Subject]
    prompt: str
    target: Image.Image
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.target, Image.Image):
            raise RequestError(f"TrainingSample.target must be a PIL image, got {type(self.target).__name__}.")
        self.subjects = [s if isinstance(s, Subject) else Subject(s) for s in self.subjects]
