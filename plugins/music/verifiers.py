"""Verifiers for test-time scaling: CLIP text similarity, and a judge interface for oracles.

``clip-text`` is the paper's selector: the cosine similarity between CLIP's embedding of each
candidate and of the prompt (placeholders replaced by class words). Weights load from a local
folder (``model_path``: a ``CLIPModel`` + ``CLIPProcessor`` folder, safetensors only, nothing
downloaded); without one it uses the SDK's embedded tiny CLIP, whose random weights make the
scores a plumbing check only: pass a real CLIP for real selection.

``scene-judge`` adapts any :class:`SceneJudge` (an object that rates images on named criteria,
such as the SubjectWorld oracle, which knows exactly what each image should contain) into a
:class:`~smg_sdk.Verifier` that ranks by a weighted sum of those criteria. A saved pipeline
names its judge by the name a plugin registered (``registry.add_judge``); nothing is imported
from a name in a manifest.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from smg_sdk import ClipEmbedder, Plan, Request, SMGError, SceneJudge, Verifier


class ClipTextVerifier(Verifier):
    """CLIP image-text cosine similarity with the prompt (registered as ``clip-text``).

    ``model_path``: local CLIP folder (default: the embedded tiny CLIP); ``use_plan_prompt``:
    score against the plan's rewritten prompt instead of the instruction; ``batch_size``:
    images per forward pass.
    """

    def __init__(
        self,
        model_path: str | None = None,
        device: str | None = None,
        torch_dtype: str | None = None,
        use_plan_prompt: bool = False,
        batch_size: int = 16,
        local_files_only: bool = True,
    ):
        self.model_path, self.device, self.torch_dtype = model_path, device, torch_dtype
        self.use_plan_prompt, self.batch_size = bool(use_plan_prompt), batch_size
        self.local_files_only = local_files_only
        self.clip = ClipEmbedder(model_path, device, torch_dtype, batch_size, local_files_only)

    @property
    def source(self) -> str:
        """Where the CLIP weights come from (a path)."""
        return self.clip.source

    def load(self) -> None:
        """Load CLIP now (it is otherwise loaded on the first :meth:`score`)."""
        self.clip.load()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ClipTextVerifier":
        """Move CLIP (loading it first); called by ``SubjectPipeline.to``."""
        self.clip.to(device=device, dtype=dtype)
        return self

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-norm CLIP image embeddings ``(N, D)``."""
        return self.clip.embed_images(images)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm CLIP text embeddings ``(N, D)`` (texts truncated to CLIP's length)."""
        return self.clip.embed_texts(texts)

    def score(self, images: list[Image.Image], request: Request, plans: list[Plan] | None = None) -> list[float]:
        if not images:
            return []
        texts = [request.text_prompt] * len(images)
        if self.use_plan_prompt and plans:
            texts = [
                Request(p.prompt, request.subjects).text_prompt if p is not None and p.prompt else request.text_prompt
                for p in plans
            ]
        image_emb = self.embed_images(images)
        unique = list(dict.fromkeys(texts))
        text_emb = self.embed_texts(unique)
        rows = torch.tensor([unique.index(t) for t in texts])
        return (image_emb * text_emb[rows]).sum(-1).tolist()


class JudgeVerifier(Verifier):
    """A :class:`SceneJudge` as a verifier (registered as ``scene-judge``): score = sum of weight x criterion.

    ``judge`` is the judge object, or the name of a registered judge (``registry.add_judge``)
    built with ``judge_options``, which is what a saved pipeline stores; ``weights`` default
    to 1 for every criterion. The last breakdown is kept in :attr:`last_criteria` for reports.
    """

    def __init__(self, judge: SceneJudge | str, weights: dict[str, float] | None = None,
                 judge_options: dict[str, Any] | None = None):
        if isinstance(judge, str):
            judge = _registered_judge(judge, judge_options)
        elif judge_options:
            raise SMGError("judge_options apply to a judge given by name; configure a judge object yourself.")
        if not isinstance(judge, SceneJudge):
            raise SMGError(f"{type(judge).__name__} has no judge(images, request, plans) method; see SceneJudge.")
        self.judge, self.weights = judge, dict(weights or {})
        self.last_criteria: list[dict[str, float]] = []

    def score(self, images: list[Image.Image], request: Request, plans: list[Plan] | None = None) -> list[float]:
        criteria = self.judge.judge(images, request, plans)
        if len(criteria) != len(images):
            raise SMGError(f"The judge rated {len(criteria)} images but was given {len(images)}.")
        self.last_criteria = [dict(c) for c in criteria]
        return [sum(self.weights.get(name, 1.0) * float(value) for name, value in c.items()) for c in criteria]


def _registered_judge(name: str, options: dict[str, Any] | None) -> SceneJudge:
    """Build the judge a plugin registered as ``name`` (never an import path)."""
    from smg_sdk import get_registry, is_valid_name

    if not is_valid_name(name):
        raise SMGError(
            f"judge {name[:80]!r} is not a registered judge name. Judges are registered by plugins with "
            "registry.add_judge(name, factory) and named here (see `smg plugins`); import paths are not accepted."
        )
    if options is not None and not isinstance(options, dict):
        raise SMGError(f"judge_options must be a dict of the judge's options, not {type(options).__name__}.")
    return get_registry().build("judge", name, **(options or {}))


__all__ = ["ClipTextVerifier", "JudgeVerifier", "SceneJudge"]
