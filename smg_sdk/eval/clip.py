"""CLIP image and text embeddings from a local folder: one implementation for metrics and verifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..errors import ModelLoadError, SMGError


def _require_clip_config(source: str) -> None:
    """Raise :class:`ModelLoadError` if ``source`` is a local folder whose config.json is another model's."""
    import json

    config = Path(source).expanduser() / "config.json"
    if not config.is_file():
        return
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        raise ModelLoadError(f"{config} cannot be read as a model config; pass a CLIP model folder.") from None
    if model_type != "clip":
        raise ModelLoadError(f"{source} holds a {model_type!r} model, not CLIP (its config.json says model_type "
                             f"{model_type!r}); pass a CLIP model folder (e.g. openai/clip-vit-large-patch14).")


class ClipEmbedder:
    """Unit-norm CLIP embeddings, loaded on first use from ``model_path`` (default: the tiny CLIP).

    ``model_path`` is a ``CLIPModel`` (safetensors) + ``CLIPProcessor`` folder; nothing is
    downloaded. ``batch_size`` bounds the images per forward pass.
    """

    def __init__(self, model_path: str | Path | None = None, device: str | None = None,
                 torch_dtype: str | None = None, batch_size: int = 16, local_files_only: bool = True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SMGError(f"CLIP batch_size must be a positive integer, got {batch_size!r}.")
        self.model_path, self.device, self.torch_dtype = model_path, device, torch_dtype
        self.batch_size, self.local_files_only = batch_size, local_files_only
        self._model = self._processor = None

    @property
    def source(self) -> str:
        """Where the CLIP weights come from (a path)."""
        if self.model_path is not None:
            return str(self.model_path)
        from ..presets.tiny import tiny_clip_path

        return str(tiny_clip_path())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ClipEmbedder":
        """Load CLIP if needed, then move it to ``device`` and/or cast it to ``dtype``."""
        self.load()
        self._model.to(device=device, dtype=dtype)
        if device is not None:
            self.device = str(device)
        return self

    def load(self) -> None:
        """Load CLIP now (it is otherwise loaded on first use)."""
        if self._model is not None:
            return
        from transformers import CLIPModel, CLIPProcessor

        from ..convert import require_safetensors

        require_safetensors(self.source, "CLIP model")
        _require_clip_config(self.source)
        kwargs: dict[str, Any] = {"local_files_only": self.local_files_only, "use_safetensors": True}
        if self.torch_dtype is not None:
            from ..placement import parse_dtype

            kwargs["dtype"] = parse_dtype(self.torch_dtype, "torch_dtype", ModelLoadError)
        try:
            model = CLIPModel.from_pretrained(self.source, **kwargs)
            processor = CLIPProcessor.from_pretrained(self.source, local_files_only=self.local_files_only)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"Could not load a CLIP model from {self.source!r} ({exc}); pass a local folder with a "
                "CLIPModel (safetensors) and its CLIPProcessor files."
            ) from exc
        if self.device is not None:
            model = model.to(self.device)
        self._model, self._processor = model.eval(), processor

    def _onloaded(self) -> torch.device:
        """Load CLIP, bring it in if it is model-offloaded (``get_*_features`` bypass the offload hook); its device."""
        from ..placement import execution_device, onload

        self.load()
        onload(self._model)
        return execution_device(self._model)

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-norm CLIP image embeddings ``(N, D)``."""
        device = self._onloaded()
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[i : i + self.batch_size]]
            pixels = self._processor(images=chunk, return_tensors="pt")["pixel_values"].to(device, self._model.dtype)
            out.append(model_features(self._model.get_image_features(pixel_values=pixels)))
        return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm CLIP text embeddings ``(N, D)`` (texts truncated to CLIP's length)."""
        device = self._onloaded()
        limit = int(self._model.config.text_config.max_position_embeddings)
        tokens = self._processor(text=list(texts), return_tensors="pt", padding=True, truncation=True, max_length=limit)
        tokens = {k: v.to(device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return torch.nn.functional.normalize(model_features(self._model.get_text_features(**tokens)).float(), dim=-1)


def model_features(output: Any) -> torch.Tensor:
    """transformers 5 may return a model output object where 4.x returned the tensor."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise SMGError(f"CLIP returned {type(output).__name__}, which holds no embedding tensor.")
