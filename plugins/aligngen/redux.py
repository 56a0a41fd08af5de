"""``redux``: FLUX Redux image tokens (SigLIP vision tower -> Redux MLP) for each subject.

The models are diffusers' ``ReduxImageEncoder`` and transformers' ``SiglipVisionModel`` with
their ``SiglipImageProcessor``, loaded from local folders (safetensors, no remote code),
exactly as ``FluxPriorReduxPipeline`` runs them. Each subject gives one stream ``redux<k>``
of ``(1, N, text width)`` tokens. By default the stream is ``side="raw"``: AlignGen's DEM
consumes it (cross-attention) and removes it. ``side="text"`` appends the tokens to the
text sequence instead, which is what FLUX Redux itself does.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    module_to,
    parse_dtype,
)

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import FluxBackend

@dataclass(frozen=True)
class ReduxFolders:
    """Where the three Redux parts live: SigLIP vision tower, its image processor, Redux MLP."""

    vision: Path
    processor: Path
    embedder: Path


def redux_folders(siglip_path: str | Path | None, redux_path: str | Path) -> ReduxFolders:
    """Resolve the model folders from what a user downloaded.

    ``redux_path`` is either a ``ReduxImageEncoder`` folder (``config.json`` + weights), with
    ``siglip_path`` a SigLIP folder holding both the vision tower and its processor, or the
    FLUX.1-Redux-dev repo as downloaded (``model_index.json``, ``image_embedder/``,
    ``image_encoder/``, ``feature_extractor/``), in which case ``siglip_path`` may be None
    (the repo's own ``image_encoder/`` and ``feature_extractor/``) or a SigLIP folder to use
    instead. Raises :class:`ModelLoadError` naming the missing file.
    """
    redux = Path(redux_path).expanduser()
    if not redux.is_dir() or not ((redux / "model_index.json").is_file() or (redux / "config.json").is_file()):
        raise ModelLoadError(
            f"redux_path {str(redux_path)!r} is not a Redux folder (it is {_what(redux)}); pass the FLUX.1-Redux-dev "
            "folder as downloaded (with model_index.json), or a ReduxImageEncoder folder (config.json + weights)."
        )
    if (redux / "model_index.json").is_file():
        embedder = redux / "image_embedder"
        vision = Path(siglip_path).expanduser() if siglip_path is not None else redux / "image_encoder"
        processor = vision if (vision / "preprocessor_config.json").is_file() else redux / "feature_extractor"
    else:
        if siglip_path is None:
            raise ModelLoadError(
                f"redux_path {str(redux_path)!r} is a single Redux model folder, so siglip_path is needed too; pass "
                "siglip_path=..., or pass the FLUX.1-Redux-dev folder (with model_index.json) as redux_path."
            )
        embedder, vision = redux, Path(siglip_path).expanduser()
        processor = vision
    for folder, what, name in ((vision, "SigLIP", "config.json"), (embedder, "Redux", "config.json"),
                               (processor, "SigLIP image processor", "preprocessor_config.json")):
        if not (folder / name).is_file():
            raise ModelLoadError(
                f"No {what} files at {str(folder)!r} (no {name}); pass siglip_path/redux_path as local folders: a "
                "FLUX.1-Redux-dev download as redux_path, or a ReduxImageEncoder folder plus a SigLIP folder."
            )
    return ReduxFolders(vision=vision, processor=processor, embedder=embedder)


def _what(path: Path) -> str:
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "a file"
    return "a folder with neither model_index.json nor config.json"


def load_redux_models(siglip_path: str | Path | None, redux_path: str | Path, dtype: torch.dtype = torch.float32):
    """(SiglipVisionModel, SiglipImageProcessor, ReduxImageEncoder) from local folders (see :func:`redux_folders`)."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import AutoImageProcessor, SiglipVisionModel

    folders = redux_folders(siglip_path, redux_path)
    try:
        vision = SiglipVisionModel.from_pretrained(str(folders.vision), local_files_only=True, use_safetensors=True,
                                                   dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(str(folders.processor), local_files_only=True)
        redux = ReduxImageEncoder.from_pretrained(str(folders.embedder), local_files_only=True, use_safetensors=True,
                                                  dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load SigLIP/Redux from {folders}: {exc}") from exc
    vision.eval().requires_grad_(False)
    redux.eval().requires_grad_(False)
    return vision, processor, redux


class ReduxEncoder(ConditionEncoder):
    """One Redux token stream per subject, named ``<prefix><k>`` (k = 1, 2, ...).

    ``redux_path`` is a FLUX.1-Redux-dev download (its ``image_encoder/`` and
    ``feature_extractor/`` are used unless ``siglip_path`` names another SigLIP folder), or a
    ReduxImageEncoder folder with ``siglip_path`` a SigLIP folder (see :func:`redux_folders`);
    ``redux_path`` None means the tiny preset's embedded models. ``side`` is ``"raw"`` (for the DEM) or ``"text"`` (plain FLUX Redux).
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
        dtype = parse_dtype(torch_dtype, "redux torch_dtype", ConditionError)
        if redux_path is None:
            from smg_sdk import tiny_redux_path, tiny_siglip_path

            siglip_path = siglip_path or str(tiny_siglip_path())
            redux_path = str(tiny_redux_path())
        self.prefix, self.side = prefix, side
        self.vision, self.processor, self.redux = load_redux_models(siglip_path, redux_path, dtype)

    @property
    def width(self) -> int:
        return int(self.redux.config.txt_in_features)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ReduxEncoder":
        """Move SigLIP and the Redux projection; called by ``SubjectPipeline.to`` (with no arguments on
        every call, to load lazy models: then nothing moves, and diffusers' ``ModelMixin.to``, which
        warns whenever ``dtype`` is passed, is not called)."""
        module_to(self.vision, device, dtype)
        module_to(self.redux, device, dtype)
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
