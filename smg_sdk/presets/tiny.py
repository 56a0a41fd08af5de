"""The embedded "tiny" FLUX: FLUX.1-dev's components and folder layout at tiny sizes.

``TINY_FLUX_PATH`` is a diffusers-format folder shipped as package data::

    tiny/flux/
        model_index.json
        transformer/     FluxTransformer2DModel (1 double + 1 single block, 2 heads x 16)
        vae/             AutoencoderKL (4 blocks: scale factor 8, 4 latent channels)
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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

TINY_FLUX_PATH: Path = Path(__file__).parent / "tiny" / "flux"

#: Generation settings that suit the tiny preset. ``max_sequence_length`` is the T5
#: sequence length the SDK encodes prompts to (the T5 tokenizer itself allows 512).
TINY_DEFAULTS: dict[str, Any] = {
    "height": 64,
    "width": 64,
    "num_inference_steps": 4,
    "guidance_scale": 3.5,
    "max_sequence_length": 64,
}


def tiny_flux_path() -> Path:
    """The shipped tiny FLUX folder; raises :class:`ModelLoadError` if it is missing."""
    if not (TINY_FLUX_PATH / "model_index.json").is_file():
        raise ModelLoadError(
            f"The tiny FLUX preset is missing (no model_index.json in {TINY_FLUX_PATH}). "
            "Build it with `python scripts/build_tiny_preset.py` from the source checkout, "
            "or reinstall smg-sdk."
        )
    return TINY_FLUX_PATH


__all__ = ["TINY_DEFAULTS", "TINY_FLUX_PATH", "tiny_flux_path"]
