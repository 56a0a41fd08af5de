"""Evaluation: the DreamBench loader and the subject-fidelity metrics (DINO, CLIP-I, CLIP-T)."""

from .dreambench import DreamBench, DreamBenchSubject, load_dreambench
from .metrics import SubjectMetrics

__all__ = ["DreamBench", "DreamBenchSubject", "SubjectMetrics", "load_dreambench"]
