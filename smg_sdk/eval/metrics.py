"""Subject-driven generation metrics: DINO and CLIP-I (identity), CLIP-T (instruction).

- DINO: cosine similarity of DINO ViT CLS features of the generated image and a reference;
- CLIP-I: cosine similarity of CLIP image embeddings of the two;
- CLIP-T: cosine similarity of the generated image's and the prompt's CLIP embeddings
  (placeholders replaced by class words, as DreamBench does).

Weights load from local folders (``clip_path``: CLIPModel + CLIPProcessor; ``dino_path``: a
DINO/DINOv2 model + image processor), safetensors only; the defaults are the embedded tiny
models, whose random weights make the numbers a plumbing check only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import ModelLoadError
from ..convert import require_safetensors
from .clip import ClipEmbedder


@dataclass
class Scores:
    dino: float
    clip_i: float
    clip_t: float


class SubjectMetrics:
    """DINO / CLIP-I / CLIP-T from local model folders (loaded once, on first use)."""

    def __init__(self, clip_path: str | Path | None = None, dino_path: str | Path | None = None):
        from ..presets.tiny import tiny_dino_path

        self.clip = ClipEmbedder(clip_path)
        self.dino_path = Path(dino_path) if dino_path else tiny_dino_path()
        self._dino = None

    def _load_dino(self):
        if self._dino is None:
            from transformers import AutoImageProcessor, AutoModel

            require_safetensors(self.dino_path, "DINO model")
            try:
                self._dino = (AutoModel.from_pretrained(self.dino_path, local_files_only=True, use_safetensors=True).eval(),
                              AutoImageProcessor.from_pretrained(self.dino_path, local_files_only=True))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"Could not load a DINO model from {self.dino_path} ({exc}); pass a local folder.") from exc
        return self._dino

    def clip_image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.clip.embed_images(images)

    def clip_text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.embed_texts(texts)

    @torch.no_grad()
    def dino_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        model, processor = self._load_dino()
        pixels = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        cls = model(pixel_values=pixels).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(cls, dim=-1)

    def score(self, image: Image.Image, references: Sequence[Image.Image], prompt: str) -> Scores:
        """One generated image against its references (averaged) and its prompt text."""
        refs = list(references)
        dino = (self.dino_embeddings([image]) @ self.dino_embeddings(refs).T).mean()
        clip_i = (self.clip_image_embeddings([image]) @ self.clip_image_embeddings(refs).T).mean()
        clip_t = (self.clip_image_embeddings([image]) @ self.clip_text_embeddings([prompt]).T).mean()
        return Scores(float(dino), float(clip_i), float(clip_t))

