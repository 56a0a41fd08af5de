"""The SubjectWorld oracle as a judge of candidates (test-time scaling's verifier).

:class:`SubjectWorldJudge` implements the MUSIC plugin's ``SceneJudge`` protocol by duck typing
(``judge(images, request, plans) -> list[dict]``), so the core never imports the plugin. It
needs no hidden ground truth: the request's instruction is parsed and its references are read
by the oracle, then each candidate is scored with :mod:`smg_sdk.eval.world_metrics`.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from ..errors import RequestError
from ..types import Plan, Request
from .oracle import Oracle
from .world_metrics import SceneTruth, score


class SubjectWorldJudge:
    """Rates images of SubjectWorld requests on ``identity``, ``instruction``, ``present``,
    ``unblended`` and ``original`` (1 - copy-paste), each in [0, 1], higher is better.

    Raises :class:`~smg_sdk.errors.RequestError` for a request that is not a SubjectWorld
    instruction or whose references show no readable subject.
    """

    def __init__(self, oracle: Oracle | None = None):
        self.oracle = oracle or Oracle()

    def truth(self, request: Request, side: int) -> SceneTruth:
        """What ``request`` asks for, read off its prompt and references."""
        try:
            return SceneTruth.from_request(request.prompt, [s.pil() for s in request.subjects], side, self.oracle)
        except ValueError as exc:
            raise RequestError(
                f"The subjectworld judge can only rate SubjectWorld requests: {exc} "
                "Use it with prompts and references from smg_sdk.data.subjectworld."
            ) from None

    def judge(self, images: Sequence[Image.Image], request: Request, plans: Sequence[Plan] | None = None) -> list[dict[str, float]]:
        if not images:
            return []
        truth = self.truth(request, images[0].width)
        out = []
        for image in images:
            metrics = score(truth, self.oracle.read(image))
            out.append({
                "identity": metrics["identity"], "instruction": metrics["instruction"],
                "present": 1.0 - metrics["omission"], "unblended": 1.0 - metrics["blending"],
                "original": 1.0 - metrics["copy_paste"],
            })
        return out


__all__ = ["SubjectWorldJudge"]
