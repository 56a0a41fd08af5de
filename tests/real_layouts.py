"""The published model repos' folder layouts, rebuilt offline at tiny widths.

Each builder writes, under ``root``, a folder shaped exactly like the Hugging Face download a
real user has (same sub-folders, file names, sharding with ``*.safetensors.index.json``,
legacy config keys and legacy processor files), with the weights of the SDK's embedded tiny
models (or seeded random weights where the published model has parts the tiny ones lack).
Nothing here is a mock: every folder loads with the stock transformers/diffusers classes.

- :func:`flux_dev`: black-forest-labs/FLUX.1-dev (sharded transformer and T5, ``tokenizer/``
  as vocab.json + merges.txt without tokenizer.json, the repo's single-file checkpoints at the root)
- :func:`flux_redux_dev`: black-forest-labs/FLUX.1-Redux-dev (``feature_extractor/``,
  ``image_encoder/``, ``image_embedder/``, ``model_index.json``)
- :func:`qwen25_vl`: Qwen/Qwen2.5-VL-7B-Instruct (flat legacy config.json with ``rope_scaling``,
  ``preprocessor_config.json``, ``chat_template.json``, sharded weights with an index)
- :func:`siglip_so400m`: google/siglip-so400m-patch14-384 (a whole ``SiglipModel``: text and vision)
- :func:`clip_vit_large`: openai/clip-vit-large-patch14 (``preprocessor_config.json`` with the
  legacy feature-extractor keys, tokenizer files, no ``processor_config.json``)
- :func:`dino_vits16`: facebook/dino-vits16 (a ViTModel shipped as ``pytorch_model.bin`` only)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from smg_sdk.presets import tiny


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _shards(folder: Path, index: str) -> list[str]:
    """The shard files an index names (asserting the folder really is sharded)."""
    files = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
    assert len(files) > 1, f"{folder} was not sharded: {files}"
    return files


def flux_dev(root: Path) -> Path:
    """FLUX.1-dev as downloaded, at the tiny preset's widths."""
    from diffusers import FluxTransformer2DModel
    from transformers import T5EncoderModel

    src, out = tiny.TINY_FLUX_PATH, root / "FLUX.1-dev"
    for name in ("scheduler", "vae", "text_encoder", "tokenizer_2"):
        shutil.copytree(src / name, out / name)
    FluxTransformer2DModel.from_pretrained(src / "transformer").save_pretrained(out / "transformer", max_shard_size="200KB")
    _shards(out / "transformer", "diffusion_pytorch_model.safetensors.index.json")
    T5EncoderModel.from_pretrained(src / "text_encoder_2").save_pretrained(out / "text_encoder_2", max_shard_size="100KB")
    _shards(out / "text_encoder_2", "model.safetensors.index.json")
    tokenizer = out / "tokenizer"  # CLIPTokenizer as slow files: vocab.json + merges.txt, no tokenizer.json
    tokenizer.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / "tokenizer" / name, tokenizer / name)
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>"}
    _write_json(tokenizer / "special_tokens_map.json", specials)
    _write_json(tokenizer / "tokenizer_config.json", {**specials, "add_prefix_space": False, "do_lower_case": True,
                                                      "errors": "replace", "model_max_length": 77,
                                                      "clean_up_tokenization_spaces": True,
                                                      "tokenizer_class": "CLIPTokenizer"})
    index = json.loads((src / "model_index.json").read_text())
    index = {k: v for k, v in index.items() if k not in ("feature_extractor", "image_encoder")}
    _write_json(out / "model_index.json", {**index, "_diffusers_version": "0.30.0.dev0"})
    # The repo's original single-file checkpoints sit at the root; diffusers must ignore them.
    (out / "flux1-dev.safetensors").write_bytes((src / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes())
    (out / "ae.safetensors").write_bytes((src / "vae" / "diffusion_pytorch_model.safetensors").read_bytes())
    return out


def flux_redux_dev(root: Path) -> Path:
    """FLUX.1-Redux-dev as downloaded: the processor is in ``feature_extractor/``, not beside the model."""
    out = root / "FLUX.1-Redux-dev"
    shutil.copytree(tiny.TINY_REDUX_PATH, out / "image_embedder")
    (out / "image_encoder").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny.TINY_SIGLIP_PATH / name, out / "image_encoder" / name)
    (out / "feature_extractor").mkdir()
    shutil.copy(tiny.TINY_SIGLIP_PATH / "preprocessor_config.json", out / "feature_extractor")
    _write_json(out / "model_index.json", {
        "_class_name": "FluxPriorReduxPipeline", "_diffusers_version": "0.32.0.dev0",
        "feature_extractor": ["transformers", "SiglipImageProcessor"],
        "image_embedder": ["flux", "ReduxImageEncoder"],
        "image_encoder": ["transformers", "SiglipVisionModel"],
        "text_encoder": [None, None], "text_encoder_2": [None, None],
        "tokenizer": [None, None], "tokenizer_2": [None, None],
    })
    return out


def qwen25_vl(root: Path) -> Path:
    """Qwen2.5-VL-Instruct as released: flat (pre-transformers-5) config keys, legacy processor files."""
    from safetensors.torch import load_file, save_file

    src, out = tiny.TINY_QWEN_VL_PATH, root / "Qwen2.5-VL-7B-Instruct"
    out.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    text, vision = config.pop("text_config"), config.pop("vision_config")
    rope = text.pop("rope_parameters")
    for key in ("layer_types", "model_type", "pad_token_id"):
        text.pop(key)
    vision.pop("model_type")
    vision.pop("rope_parameters")
    vision.update(in_chans=vision.pop("in_channels"), spatial_patch_size=vision["patch_size"])
    legacy = {**config, **text, "rope_theta": rope["rope_theta"], "torch_dtype": config.pop("dtype"),
              "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
              "vision_config": vision, "vision_token_id": config["image_token_id"] - 1,
              "transformers_version": "4.41.2"}
    legacy.pop("dtype", None)
    _write_json(out / "config.json", legacy)
    shutil.copy(src / "generation_config.json", out)
    state = load_file(str(src / "model.safetensors"))
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(out / file), metadata={"format": "pt"})
    _write_json(out / "model.safetensors.index.json", {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
        "weight_map": {k: file for file, keys in shards.items() for k in keys},
    })
    processor = json.loads((src / "processor_config.json").read_text())
    image = processor["image_processor"]
    size = image.pop("size")
    _write_json(out / "preprocessor_config.json", {**image, "min_pixels": size["shortest_edge"],
                                                   "max_pixels": size["longest_edge"],
                                                   "processor_class": "Qwen2_5_VLProcessor"})
    template = (src / "chat_template.jinja").read_text(encoding="utf-8")
    _write_json(out / "chat_template.json", {"chat_template": template})
    shutil.copy(src / "tokenizer.json", out)
    tokenizer_config = json.loads((src / "tokenizer_config.json").read_text())
    tokenizer_config.pop("backend")
    tokenizer_config.pop("extra_special_tokens")
    _write_json(out / "tokenizer_config.json", tokenizer_config)
    return out


def siglip_so400m(root: Path, seed: int = 0) -> Path:
    """A whole SiglipModel (text + vision towers) with the tiny SigLIP's vision config and processor."""
    from transformers import SiglipConfig, SiglipModel

    out = root / "siglip-so400m-patch14-384"
    vision = json.loads((tiny.TINY_SIGLIP_PATH / "config.json").read_text())
    vision = {k: v for k, v in vision.items() if k not in ("architectures", "dtype", "transformers_version", "model_type")}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
            "vocab_size": 100, "max_position_embeddings": 16}
    torch.manual_seed(seed)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(out)
    shutil.copy(tiny.TINY_SIGLIP_PATH / "preprocessor_config.json", out)
    return out


def clip_vit_large(root: Path) -> Path:
    """openai/clip-vit-large-patch14's file set: legacy preprocessor and tokenizer files, no processor_config.json."""
    src, out = tiny.TINY_CLIP_PATH, root / "clip-vit-large-patch14"
    out.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"):
        shutil.copy(src / name, out / name)
    image = json.loads((src / "processor_config.json").read_text())["image_processor"]
    image["feature_extractor_type"] = "CLIPFeatureExtractor"
    _write_json(out / "preprocessor_config.json", image)
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>"}
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(out / "tokenizer_config.json", {**specials, "do_lower_case": True, "model_max_length": 77,
                                                "processor_class": "CLIPProcessor",
                                                "tokenizer_class": "CLIPTokenizer"})
    return out


def dino_vits16(root: Path, seed: int = 0) -> Path:
    """facebook/dino-vits16: a ViTModel whose only weights are ``pytorch_model.bin``; legacy feature-extractor config."""
    from transformers import ViTConfig, ViTModel

    out = root / "dino-vits16"
    torch.manual_seed(seed)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=64, patch_size=16, qkv_bias=True), add_pooling_layer=False)
    out.mkdir(parents=True)
    model.config.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    _write_json(out / "preprocessor_config.json", {
        "crop_size": 64, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "ViTFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": 64,
    })
    return out
