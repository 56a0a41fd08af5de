"""The embedded "tiny" FLUX: FLUX.1-dev's components and folder layout at tiny sizes.

``TINY_FLUX_PATH`` is a diffusers-format folder shipped as package data::

    tiny/flux/
        model_index.json
        transformer/     FluxTransformer2DModel (2 double + 4 single blocks, 4 heads x 32)
        vae/             AutoencoderKL (4 blocks: scale factor 8, 16 latent channels)
        text_encoder/    CLIPTextModel (hidden 32)     tokenizer/    CLIPTokenizer (BPE)
        text_encoder_2/  T5EncoderModel (d_model 32)   tokenizer_2/  T5 tokenizer (Unigram)
        scheduler/       FlowMatchEulerDiscreteScheduler (FLUX.1-dev's config)

so ``diffusers.FluxPipeline.from_pretrained(TINY_FLUX_PATH, local_files_only=True)`` loads
it offline on a CPU. Every model file is safetensors.

``scripts/build_tiny_preset.py`` writes the folder: tokenizers trained offline on an
embedded English corpus, and seeded random weights. The SubjectWorld training script then
replaces those random weights with trained ones by overwriting the weight files in this
folder (same file names, same shapes, same configs). That is a data change, not a code
change: nothing that loads the folder, here or elsewhere, has to change with it.
Rebuilding with the build script brings the random weights back.

Beside ``tiny/flux/``, ``scripts/build_tiny_vision.py`` writes the other models the SDK reads
or measures with, each a standard folder for its stock class (``local_files_only=True``, no
remote code, safetensors, seeded random weights until training replaces them):

    tiny/qwen2_5_vl/  Qwen2_5_VLForConditionalGeneration + Qwen2_5_VLProcessor  tiny_qwen_vl_path()
    tiny/siglip/      SiglipVisionModel + SiglipImageProcessor (64 px -> 64 tokens)  tiny_siglip_path()
    tiny/redux/       diffusers ReduxImageEncoder (SigLIP width -> FLUX text width 32)  tiny_redux_path()
    tiny/clip/        CLIPModel + CLIPProcessor (CLIP-T / CLIP-I, clip-text verifier)  tiny_clip_path()
    tiny/dino/        Dinov2Model + BitImageProcessor (the DINO metric)                 tiny_dino_path()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

TINY_ROOT: Path = Path(__file__).parent / "tiny"
TINY_FLUX_PATH: Path = TINY_ROOT / "flux"
TINY_QWEN_VL_PATH: Path = TINY_ROOT / "qwen2_5_vl"
TINY_SIGLIP_PATH: Path = TINY_ROOT / "siglip"
TINY_REDUX_PATH: Path = TINY_ROOT / "redux"
TINY_CLIP_PATH: Path = TINY_ROOT / "clip"
TINY_DINO_PATH: Path = TINY_ROOT / "dino"
TINY_SUBJECT_LORA_PATH: Path = TINY_ROOT / "subject_lora" / "pytorch_lora_weights.safetensors"
SUBJECT_ADAPTER = "subject"
"""Name of the tiny preset's reference-stream LoRA (the OminiControl-style subject adapter)."""

#: Generation settings that suit the tiny preset. ``max_sequence_length`` is the T5
#: sequence length the SDK encodes prompts to (the T5 tokenizer itself allows 512).
TINY_DEFAULTS: dict[str, Any] = {
    "height": 128,
    "width": 128,
    "num_inference_steps": 8,
    "guidance_scale": 3.5,
    "max_sequence_length": 48,
}

#: True classifier-free guidance the ``tiny`` preset samples with: its base was trained with
#: 10 % of captions dropped and its subject adapter with 20 %, so both know the empty prompt.
#: The negative branch drops the references too (as diffusers' IP-Adapter guidance does), so
#: the guidance pushes toward the instruction and the references. Twice the transformer calls.
TINY_GUIDANCE: dict[str, Any] = {"negative_prompt": "", "true_cfg_scale": 3.0, "negative_references": False}


def tiny_flux_path() -> Path:
    """The shipped tiny FLUX folder; raises :class:`ModelLoadError` if it is missing."""
    if not (TINY_FLUX_PATH / "model_index.json").is_file():
        raise ModelLoadError(
            f"The tiny FLUX preset is missing (no model_index.json in {TINY_FLUX_PATH}). "
            "Build it with `python scripts/build_tiny_preset.py` from the source checkout, "
            "or reinstall smg-sdk."
        )
    return TINY_FLUX_PATH


def tiny_subject_lora_path() -> Path | None:
    """The shipped subject adapter (a diffusers LoRA file), or None where the package has none."""
    return TINY_SUBJECT_LORA_PATH if TINY_SUBJECT_LORA_PATH.is_file() else None


def _tiny_vision_folder(path: Path, what: str) -> Path:
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"The tiny {what} is missing (no config.json in {path}). Build it with "
            f"`python scripts/build_tiny_vision.py --only {path.name}` from the source checkout, "
            "or reinstall smg-sdk."
        )
    return path


def tiny_qwen_vl_path() -> Path:
    """The shipped tiny Qwen2.5-VL folder (model + processor); :class:`ModelLoadError` if missing."""
    return _tiny_vision_folder(TINY_QWEN_VL_PATH, "Qwen2.5-VL")


def tiny_siglip_path() -> Path:
    """The shipped tiny SigLIP vision tower (Redux's image encoder); :class:`ModelLoadError` if missing."""
    return _tiny_vision_folder(TINY_SIGLIP_PATH, "SigLIP vision model")


def tiny_redux_path() -> Path:
    """The shipped tiny diffusers ReduxImageEncoder; :class:`ModelLoadError` if missing."""
    return _tiny_vision_folder(TINY_REDUX_PATH, "Redux image encoder")


def tiny_clip_path() -> Path:
    """The shipped tiny CLIP model + processor (metrics, verifier); :class:`ModelLoadError` if missing."""
    return _tiny_vision_folder(TINY_CLIP_PATH, "CLIP model")


def tiny_dino_path() -> Path:
    """The shipped tiny DINOv2 model + image processor; :class:`ModelLoadError` if missing."""
    return _tiny_vision_folder(TINY_DINO_PATH, "DINOv2 model")


__all__ = [
    "TINY_CLIP_PATH",
    "TINY_DEFAULTS",
    "TINY_GUIDANCE",
    "TINY_DINO_PATH",
    "TINY_FLUX_PATH",
    "TINY_QWEN_VL_PATH",
    "TINY_REDUX_PATH",
    "TINY_ROOT",
    "TINY_SIGLIP_PATH",
    "TINY_SUBJECT_LORA_PATH",
    "SUBJECT_ADAPTER",
    "tiny_clip_path",
    "tiny_dino_path",
    "tiny_flux_path",
    "tiny_qwen_vl_path",
    "tiny_redux_path",
    "tiny_siglip_path",
    "tiny_subject_lora_path",
]
