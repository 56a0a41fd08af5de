#!/usr/bin/env python
"""Build the embedded tiny vision(-language) models that sit beside the tiny FLUX folder.

    python scripts/build_tiny_vision.py [--out-root DIR] [--seed N] [--only NAME ...]

Writes five folders under ``smg_sdk/presets/tiny/`` (or ``--out-root``), each loadable with
its stock transformers/diffusers class and ``local_files_only=True``, no remote code:

    qwen2_5_vl/  Qwen2_5_VLForConditionalGeneration (text: hidden 64, 9 layers, 4 heads;
                 vision: hidden 32, 2 blocks, patch 8, merge 2) + Qwen2_5_VLProcessor
                 (Qwen2VLImageProcessor, 8x8 patches -> a 64x64 image gives 9 image tokens;
                 byte-level BPE Qwen2Tokenizer with Qwen's special tokens; ChatML template)
    siglip/      SiglipVisionModel (hidden 32, 64 px, patch 8 -> 64 tokens) + SiglipImageProcessor
    redux/       diffusers ReduxImageEncoder (redux_dim 32 -> txt_in_features 32, FLUX's text width)
    clip/        CLIPModel (text + vision, projection 32) + CLIPProcessor (the tiny FLUX CLIP
                 tokenizer, CLIPImageProcessor at 64 px): CLIP-T / CLIP-I metrics, verifier
    dino/        Dinov2Model (hidden 32, 64 px, patch 8) + BitImageProcessor: the DINO metric

The tokenizers come from ``build_tiny_preset.py``'s corpus and helpers: the CLIP tokenizer
is the tiny FLUX one (same function, same corpus, so the same files), and the Qwen merges
are learnt with the same deterministic BPE loop over the words Qwen2Tokenizer's own
pre-tokenizer cuts. Weights are seeded random (``torch.manual_seed(seed + k)`` per model),
saved as safetensors. Every folder is written atomically (temporary folder + rename) and
the build is deterministic: two runs give byte-identical files.

The image processors are built from their PIL variants (``...Pil``: no torchvision here),
which transformers 5 saves under the base class names (``Qwen2VLImageProcessor``...): loading
picks the torchvision variant where torchvision is installed and the PIL one where it is not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:  # also when loaded by file path (tests, importlib)
    sys.path.insert(0, str(SCRIPTS))

import build_tiny_preset as flux_build  # noqa: E402  (corpus, BPE and CLIP tokenizer helpers)

REPO_ROOT = SCRIPTS.parent
DEFAULT_OUT_ROOT = REPO_ROOT / "smg_sdk" / "presets" / "tiny"
DEFAULT_SEED = 0
FOLDERS = ("qwen2_5_vl", "siglip", "redux", "clip", "dino")

IMAGE_SIZE = 64  # the tiny preset's image size
TEXT_WIDTH = flux_build.HIDDEN  # FLUX's text width at tiny size (T5 d_model = 32)

# --- Qwen2.5-VL ---------------------------------------------------------------------------
QWEN_NUM_MERGES = 1000
QWEN_MAX_LENGTH = 2048
QWEN_PATCH = 8
QWEN_MERGE = 2
QWEN_FACTOR = QWEN_PATCH * QWEN_MERGE  # image sides are rounded to multiples of this
QWEN_MIN_PIXELS = QWEN_FACTOR * QWEN_FACTOR  # at least one image token
QWEN_MAX_PIXELS = 3 * 3 * QWEN_FACTOR * QWEN_FACTOR  # at most 9 image tokens (64x64 -> 48x48 -> 3x3)

# Qwen2.5-VL's special tokens, in Qwen's id order (151643...), appended after the merges.
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL-Instruct's chat template (ChatML; default system prompt; images and videos as
# <|vision_start|><|image_pad|><|vision_end|>, optionally numbered with add_vision_id).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Chat and planning text the MLLM reads or writes besides prompts: the template's words and
# MUSIC-style plans. Only the Qwen tokenizer learns from these lines; the FLUX corpus is as is.
CHAT_LINES = """\
system
user
assistant
You are a helpful assistant.
Picture 1: Picture 2: Picture 3: Picture 4:
Describe the subject in Picture 1.
Describe each subject, where it goes and how the subjects relate.
Subject 1 is a dog. Subject 2 is a backpack. The dog sits to the left of the backpack.
layout: 0 0 1 1 0 0 2 2
plan: subject 1 on the left, subject 2 on the right, both on the beach.
"""


def qwen_corpus_lines() -> list[str]:
    """The FLUX corpus plus the chat lines above (three times, so the chat template's words
    get merges of their own: BPE only merges pairs seen at least twice)."""
    chat = [line for line in CHAT_LINES.splitlines() if line.strip()]
    return flux_build.corpus_lines() + chat * 3


def build_qwen_tokenizer(lines: list[str]):
    """Qwen2Tokenizer with byte-level BPE merges learnt from ``lines``.

    Vocab layout as in Qwen2: the 256 byte symbols (GPT-2 order), one token per merge, then
    Qwen2.5-VL's special tokens in Qwen's order. Every byte has a symbol, so any string
    tokenizes. EOS is ``<|im_end|>`` and padding ``<|endoftext|>``, as in Qwen2.5-VL-Instruct.
    """
    from transformers import Qwen2Tokenizer

    # Cut the corpus with Qwen2Tokenizer's own normalizer and pre-tokenizer (Qwen's split
    # regex, byte-level alphabet; a leading space joins the word as "Ġ").
    template = Qwen2Tokenizer(vocab={QWEN_SPECIALS[0]: 0}, merges=[]).backend_tokenizer
    words: dict[tuple[str, ...], int] = {}
    for line in lines:
        for word, _ in template.pre_tokenizer.pre_tokenize_str(template.normalizer.normalize_str(line)):
            words[tuple(word)] = words.get(tuple(word), 0) + 1
    merges = flux_build.learn_bpe_merges(words, QWEN_NUM_MERGES)

    tokens = list(flux_build._bytes_to_unicode().values())
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += QWEN_SPECIALS
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=QWEN_MAX_LENGTH,
        additional_special_tokens=QWEN_SPECIALS[1:],
        errors="replace",
    )


def write_qwen_vl(folder: Path, seed: int) -> None:
    """Tiny Qwen2_5_VLForConditionalGeneration + Qwen2_5_VLProcessor + generation config."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from smg_sdk.mllm import image_only_processor_class

    tokenizer = build_qwen_tokenizer(qwen_corpus_lines())
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIALS}
    hidden, heads = 64, 4
    head_dim = hidden // heads
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=96,
            num_hidden_layers=9,  # every 3rd layer -> 3, 6, 9
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=QWEN_MAX_LENGTH,
            rms_norm_eps=1e-6,
            # M-RoPE: temporal/height/width sections of the head's rotary half (sum = head_dim / 2).
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            in_channels=3,
            patch_size=QWEN_PATCH,
            spatial_merge_size=QWEN_MERGE,
            temporal_patch_size=2,
            window_size=2 * QWEN_FACTOR,  # windows of 2x2 merged tokens, as 112 = 4 x 28 in Qwen2.5-VL
            fullatt_block_indexes=[1],
            out_hidden_size=hidden,
            tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == head_dim
    torch.manual_seed(seed + 10)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(folder, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=QWEN_MIN_PIXELS,
        max_pixels=QWEN_MAX_PIXELS,
        patch_size=QWEN_PATCH,
        temporal_patch_size=2,
        merge_size=QWEN_MERGE,
    )
    # Qwen2_5_VLProcessor insists on a video processor, and every video processor needs
    # torchvision, which these machines do not have. The image-only variant of the same class
    # (smg_sdk.mllm) saves exactly what Qwen2_5_VLProcessor saves, under its name; the video
    # section is written by hand so that transformers with torchvision loads the folder as is.
    processor_cls = image_only_processor_class(Qwen2_5_VLProcessor)
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    config_path = folder / "processor_config.json"
    processor_config = json.loads(config_path.read_text(encoding="utf-8"))
    processor_config["video_processor"] = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "patch_size": QWEN_PATCH,
        "temporal_patch_size": 2,
        "merge_size": QWEN_MERGE,
        "size": {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
        "min_frames": 2,
        "max_frames": 16,
        "image_mean": list(image_processor.image_mean),
        "image_std": list(image_processor.image_std),
    }
    config_path.write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --- SigLIP + Redux -----------------------------------------------------------------------
SIGLIP_HIDDEN = 32
VISION_PATCH = 8  # 64 px / 8 -> 8 x 8 = 64 patch tokens (SigLIP, CLIP, DINOv2)


def write_siglip(folder: Path, seed: int) -> None:
    """Tiny SiglipVisionModel + SiglipImageProcessor (the Redux image tower)."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(seed + 20)
    model = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=SIGLIP_HIDDEN,
            intermediate_size=2 * SIGLIP_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=VISION_PATCH,
        )
    ).eval()
    model.save_pretrained(folder, safe_serialization=True)
    SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)


def write_redux(folder: Path, seed: int) -> None:
    """diffusers' ReduxImageEncoder: SigLIP tokens (width 32) -> FLUX text width (32)."""
    import torch
    from diffusers import ReduxImageEncoder

    torch.manual_seed(seed + 30)
    ReduxImageEncoder(redux_dim=SIGLIP_HIDDEN, txt_in_features=TEXT_WIDTH).save_pretrained(
        folder, safe_serialization=True
    )


# --- CLIP + DINOv2 (metrics) --------------------------------------------------------------


def write_clip(folder: Path, seed: int) -> None:
    """Tiny CLIPModel + CLIPProcessor; the text side uses the tiny FLUX CLIP tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    clip_tok, clip_vocab, clip_merges = flux_build.build_clip_tokenizer(flux_build.corpus_lines())
    torch.manual_seed(seed + 40)
    model = CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=len(clip_tok),
                hidden_size=TEXT_WIDTH,
                intermediate_size=2 * TEXT_WIDTH,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=flux_build.CLIP_MAX_LENGTH,
                hidden_act="quick_gelu",
                bos_token_id=clip_tok.bos_token_id,
                eos_token_id=clip_tok.eos_token_id,
                pad_token_id=clip_tok.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=IMAGE_SIZE,
                patch_size=VISION_PATCH,
                hidden_act="quick_gelu",
            ),
            projection_dim=32,
        )
    ).eval()
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=clip_tok).save_pretrained(folder)
    flux_build.save_clip_tokenizer(clip_tok, clip_vocab, clip_merges, folder)  # + vocab.json, merges.txt


def write_dino(folder: Path, seed: int) -> None:
    """Tiny Dinov2Model + BitImageProcessor (DINOv2's processor: resize, crop, ImageNet norm)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    torch.manual_seed(seed + 50)
    model = Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_ratio=2,
            image_size=IMAGE_SIZE,
            patch_size=VISION_PATCH,
        )
    ).eval()
    model.save_pretrained(folder, safe_serialization=True)
    BitImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    ).save_pretrained(folder)


WRITERS: dict[str, Callable[[Path, int], None]] = {
    "qwen2_5_vl": write_qwen_vl,
    "siglip": write_siglip,
    "redux": write_redux,
    "clip": write_clip,
    "dino": write_dino,
}


def build(
    out_root: Path = DEFAULT_OUT_ROOT, seed: int = DEFAULT_SEED, only: list[str] | None = None
) -> dict[str, Path]:
    """Build the folders named in ``only`` (default: all) under ``out_root``, each atomically."""
    names = list(only or FOLDERS)
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        raise ValueError(f"unknown folder(s) {unknown}; choose from {list(FOLDERS)}")
    out_root = Path(out_root)
    return {
        name: flux_build.write_atomically(out_root / name, lambda tmp, name=name: WRITERS[name](tmp, seed))
        for name in names
    }


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-root", type=Path, default=DEFAULT_OUT_ROOT, help=f"parent folder (default: {DEFAULT_OUT_ROOT})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="torch seed of the random weights")
    parser.add_argument("--only", nargs="+", choices=FOLDERS, help="build only these folders")
    args = parser.parse_args(argv)
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    for name, out in build(args.out_root, args.seed, args.only).items():
        print(f"wrote {out} ({folder_size(out) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
