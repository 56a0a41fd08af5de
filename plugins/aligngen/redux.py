"""``redux``: FLUX Redux image tokens (SigLIP vision tower -> Redux MLP) for each subject.

The models are diffusers' ``ReduxImageEncoder`` and transformers' ``SiglipVisionModel`` with
their ``SiglipImageProcessor``, loaded from local folders (safetensors, no remote code),
exactly as ``FluxPriorReduxPipeline`` runs them. Each subject gives one stream ``redux<k>``
of ``(1, N, text width)`` tokens. By default the stream is ``side="raw"``: AlignGen's DEM
consumes it (cross-attention) and removes it. ``side="text"`` appends the tokens to the
text sequence instead, which is what FLUX Redux itself does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smg_sdk import (
    ConditionEncoder,
    ConditionError,
    ConditionSet,
    ConditionStream,
    ModelLoadError,
    Request,
    StreamSpec,
)

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import FluxBackend

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_redux_models(siglip_path: str | Path, redux_path: str | Path, dtype: torch.dtype = torch.float32):
    """(SiglipVisionModel, SiglipImageProcessor, ReduxImageEncoder) from local folders."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import AutoImageProcessor, SiglipVisionModel

    for path, what in ((siglip_path, "SigLIP"), (redux_path, "Redux")):
        if not (Path(path) / "config.json").is_file():
            raise ModelLoadError(f"No {what} model folder at {str(path)!r} (no config.json); pass a local folder.")
    try:
        vision = SiglipVisionModel.from_pretrained(str(siglip_path), local_files_only=True, use_safetensors=True,
                                                   dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(str(siglip_path), local_files_only=True)
        redux = ReduxImageEncoder.from_pretrained(str(redux_path), local_files_only=True, use_safetensors=True,
                                                  torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load SigLIP/Redux from {siglip_path} and {redux_path}: {exc}") from exc
    vision.eval().requires_grad_(False)
    redux.eval().requires_grad_(False)
    return vision, processor, redux


class ReduxEncoder(ConditionEncoder):
    """One Redux token stream per subject, named ``<prefix><k>`` (k = 1, 2, ...).

    ``siglip_path``/``redux_path`` are local folders; None means the tiny preset's embedded
    ones. ``side`` is ``"raw"`` (for the DEM) or ``"text"`` (plain FLUX Redux).
    """

    reads_prompt = False  # Redux tokens depend only on the subject images
    makes_streams = (StreamSpec("{prefix}*", side="{side}"),)
    writes_meta = ()

    def __init__(
        self,
        siglip_path: str | None = None,
        redux_path: str | None = None,
        prefix: str = "redux",
        side: str = "raw",
        torch_dtype: str = "float32",
    ):
        if side not in ("raw", "text"):
            raise ConditionError(f"redux side must be 'raw' (for the DEM) or 'text' (plain FLUX Redux), not {side!r}.")
        if torch_dtype not in DTYPES:
            raise ConditionError(f"redux torch_dtype must be one of {sorted(DTYPES)}, not {torch_dtype!r}.")
        if siglip_path is None or redux_path is None:
            from smg_sdk import tiny_redux_path, tiny_siglip_path

            siglip_path = siglip_path or str(tiny_siglip_path())
            redux_path = redux_path or str(tiny_redux_path())
        self.prefix, self.side = prefix, side
        self.vision, self.processor, self.redux = load_redux_models(siglip_path, redux_path, DTYPES[torch_dtype])

    @property
    def width(self) -> int:
        return int(self.redux.config.txt_in_features)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ReduxEncoder":
        """Move SigLIP and the Redux projection; called by ``SubjectPipeline.to``."""
        self.vision.to(device=device, dtype=dtype)
        self.redux.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def image_tokens(self, images: list[Any], device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N_images, tokens, width)`` Redux tokens on ``device``, as FluxPriorReduxPipeline computes them.

        The models run where they are (``SubjectPipeline.to`` places them); only the result moves.
        """
        pixels = self.processor.preprocess(images=images, do_resize=True, return_tensors="pt", do_convert_rgb=True)
        pixels = pixels.to(device=self.vision.device, dtype=self.vision.dtype)
        hidden = self.vision(**pixels).last_hidden_state
        return self.redux(hidden).image_embeds.to(device)

    def encode(self, request: Request, backend: "FluxBackend") -> ConditionSet:
        if not request.subjects:
            return ConditionSet()
        if self.side == "text" and self.width != backend.text_width:
            raise ConditionError(
                f"Redux tokens are {self.width} wide but this FLUX's text width is {backend.text_width}; "
                "load the Redux model made for this FLUX."
            )
        tokens = self.image_tokens([s.pil() for s in request.subjects], backend.device)
        streams = [
            ConditionStream(
                name=f"{self.prefix}{k + 1}",
                tokens=tokens[k : k + 1],
                position_ids=backend.text_position_ids(tokens.shape[1]),
                side=self.side,  # type: ignore[arg-type]
                subject=k,
                meta={"redux": True},
            )
            for k in range(len(request.subjects))
        ]
        return ConditionSet(streams)
