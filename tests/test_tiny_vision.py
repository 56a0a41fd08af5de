"""The embedded tiny vision(-language) models (``scripts/build_tiny_vision.py``).

Each folder loads through its stock transformers/diffusers class with ``local_files_only``,
runs, and gives outputs of the shapes the SDK relies on; every model file is safetensors,
every folder is small, and the build is deterministic.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_image
from smg_sdk.errors import ModelLoadError
from smg_sdk.presets import tiny as tiny_module
from smg_sdk.presets.tiny import (
    tiny_clip_path,
    tiny_dino_path,
    tiny_flux_path,
    tiny_qwen_vl_path,
    tiny_redux_path,
    tiny_siglip_path,
)

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "scripts" / "build_tiny_vision.py"
FOLDERS = {
    "qwen2_5_vl": tiny_qwen_vl_path,
    "siglip": tiny_siglip_path,
    "redux": tiny_redux_path,
    "clip": tiny_clip_path,
    "dino": tiny_dino_path,
}
MAX_FOLDER_BYTES = 2_000_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and it does not thrash when other jobs
    share the machine's two cores (two OpenMP threads then run ~50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_folder_is_small_and_safetensors_only(name):
    folder = FOLDERS[name]()
    files = _files(folder)
    assert sum(files.values()) < MAX_FOLDER_BYTES, files
    weights = [f for f in files if f.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5"))]
    assert weights and all(f.endswith(".safetensors") for f in weights), weights


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_missing_folder_names_the_build_script(name, monkeypatch, tmp_path):
    constant = {"qwen2_5_vl": "TINY_QWEN_VL_PATH"}.get(name, f"TINY_{name.upper()}_PATH")
    monkeypatch.setattr(tiny_module, constant, tmp_path / name)
    with pytest.raises(ModelLoadError, match=r"scripts/build_tiny_vision\.py"):
        getattr(tiny_module, FOLDERS[name].__name__)()


def test_build_is_deterministic(tmp_path):
    """Two builds in two processes give the same files, byte for byte, and the shipped
    folders have the same files (weights may since have been trained)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(BUILD_SCRIPT), "--out-root", str(tmp_path / "a")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        spec = importlib.util.spec_from_file_location("build_tiny_vision", BUILD_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(tmp_path / "b")
    finally:
        log, _ = child.communicate(timeout=180)
    assert child.returncode == 0, log
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(FOLDERS)  # no temp folders left
    for name, shipped in FOLDERS.items():
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert _files(a).keys() == _files(b).keys() == _files(shipped()).keys(), name
        for file in _files(a):
            assert (a / file).read_bytes() == (b / file).read_bytes(), f"{name}/{file}"


# --- Qwen2.5-VL -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen():
    from transformers import Qwen2_5_VLForConditionalGeneration

    from smg_sdk.mllm import load_processor

    path = tiny_qwen_vl_path()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, local_files_only=True).eval()
    return model, load_processor(path)


def test_qwen_loads_with_stock_classes(qwen):
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen2_5_VLProcessor

    model, processor = qwen
    path = tiny_qwen_vl_path()
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    assert config.model_type == "qwen2_5_vl" and not getattr(config, "auto_map", None)  # no remote code
    assert config.text_config.num_hidden_layers == 9 and config.vision_config.spatial_merge_size == 2
    auto = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    assert type(auto) is type(model)
    assert isinstance(processor, Qwen2_5_VLProcessor) and type(processor).__name__ == "Qwen2_5_VLProcessor"
    tokenizer = processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert tokenizer.convert_ids_to_tokens(token_id) == token and token_id < config.text_config.vocab_size
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert len(tokenizer) == config.text_config.vocab_size


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None,
    reason="transformers 5 builds Qwen-VL processors (video part included) only with torchvision",
)
def test_qwen_autoprocessor_with_torchvision():
    from transformers import AutoProcessor, Qwen2_5_VLProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen_vl_path(), local_files_only=True)
    assert isinstance(processor, Qwen2_5_VLProcessor)


def test_qwen_runs_chat_with_images_and_generates(qwen):
    model, processor = qwen
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "image"}, {"type": "text", "text": "a dog next to a backpack"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[text], images=[make_image(0, 64), make_image(1, 32)], return_tensors="pt")
    # 64x64 -> 48x48 (max_pixels) -> 6x6 patches of 8 -> 3x3 = 9 tokens; 32x32 -> 4x4 patches -> 4 tokens
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 6], [1, 4, 4]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 9 + 4
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    length = inputs["input_ids"].shape[1]
    assert len(out.hidden_states) == 10 and out.hidden_states[0].shape == (1, length, 64)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, length + 4)


@settings(max_examples=8, deadline=None)
@given(st.text(max_size=40))
def test_qwen_tokenizer_round_trips_any_text(qwen, text):
    import unicodedata

    tokenizer = qwen[1].tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)  # byte-level: nothing unknown


# --- SigLIP + Redux ---------------------------------------------------------------------------


def test_siglip_and_redux_give_flux_width_tokens():
    from diffusers import ReduxImageEncoder
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder as FromModule
    from transformers import AutoImageProcessor, SiglipVisionModel

    assert FromModule is ReduxImageEncoder
    siglip = SiglipVisionModel.from_pretrained(tiny_siglip_path(), local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(tiny_siglip_path(), local_files_only=True)
    redux = ReduxImageEncoder.from_pretrained(tiny_redux_path(), local_files_only=True)
    pixels = processor(images=[make_image(0, 64), make_image(1, 40)], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 64, 64)
    with torch.no_grad():
        features = siglip(pixel_values=pixels).last_hidden_state
        tokens = redux(features).image_embeds
    assert features.shape == (2, 64, siglip.config.hidden_size)
    assert redux.config.redux_dim == siglip.config.hidden_size and redux.config.txt_in_features == 32
    assert tokens.shape == (2, 64, 32)


def test_redux_folders_run_in_diffusers_prior_pipeline():
    """diffusers' own FluxPriorReduxPipeline takes the tiny SigLIP + Redux + FLUX text encoders."""
    from diffusers import FluxPriorReduxPipeline, ReduxImageEncoder
    from transformers import (
        AutoImageProcessor,
        CLIPTextModel,
        CLIPTokenizer,
        SiglipVisionModel,
        T5EncoderModel,
        T5TokenizerFast,
    )

    flux = tiny_flux_path()
    pipe = FluxPriorReduxPipeline(
        image_encoder=SiglipVisionModel.from_pretrained(tiny_siglip_path(), local_files_only=True),
        feature_extractor=AutoImageProcessor.from_pretrained(tiny_siglip_path(), local_files_only=True),
        image_embedder=ReduxImageEncoder.from_pretrained(tiny_redux_path(), local_files_only=True),
        text_encoder=CLIPTextModel.from_pretrained(flux / "text_encoder", local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(flux / "tokenizer", local_files_only=True),
        text_encoder_2=T5EncoderModel.from_pretrained(flux / "text_encoder_2", local_files_only=True),
        tokenizer_2=T5TokenizerFast.from_pretrained(flux / "tokenizer_2", local_files_only=True),
    )
    out = pipe(make_image(2, 64), prompt="a dog")
    assert out.prompt_embeds.shape == (1, 512 + 64, 32) and out.pooled_prompt_embeds.shape == (1, 32)


# --- CLIP + DINOv2 ------------------------------------------------------------------------------


def test_clip_text_and_image_features():
    from transformers import AutoProcessor, CLIPModel, CLIPProcessor

    path = tiny_clip_path()
    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    assert isinstance(processor, CLIPProcessor)
    # the text side is the tiny FLUX CLIP tokenizer, file for file
    flux_tokenizer = tiny_flux_path() / "tokenizer"
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        assert (path / name).read_bytes() == (flux_tokenizer / name).read_bytes(), name
    inputs = processor(text=["a dog", "a red backpack on the beach"], images=[make_image(0, 80)],
                       return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    with torch.no_grad():
        out = model(**inputs)
    assert out.text_embeds.shape == (2, 32) and out.image_embeds.shape == (1, 32)
    assert out.logits_per_image.shape == (1, 2)


def test_dino_features():
    from transformers import AutoImageProcessor, Dinov2Model

    path = tiny_dino_path()
    model = Dinov2Model.from_pretrained(path, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    pixels = processor(images=[make_image(0, 64), make_image(1, 96)], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixel_values=pixels)
    assert out.last_hidden_state.shape == (2, 1 + 64, 32) and out.pooler_output.shape == (2, 32)
