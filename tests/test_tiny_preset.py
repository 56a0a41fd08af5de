"""The embedded tiny FLUX preset: a diffusers folder that loads offline and generates.

Checks the folder shipped in ``smg_sdk/presets/tiny/flux`` (built by
``scripts/build_tiny_preset.py``): diffusers loads and runs it, every model file is
safetensors, the offline-built tokenizers take any text, and the build is deterministic.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smg_sdk.errors import ModelLoadError
from smg_sdk.presets import tiny as tiny_module

from smg_sdk.presets.tiny import TINY_DEFAULTS, TINY_FLUX_PATH, tiny_flux_path

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "scripts" / "build_tiny_preset.py"
COMPONENTS = ["scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae"]
MODELS = ["text_encoder", "text_encoder_2", "transformer", "vae"]


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_tiny_preset", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def pipe():
    from diffusers import FluxPipeline

    path = tiny_flux_path()
    start = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(str(path), local_files_only=True)
    print(f"\ntiny FLUX pipeline loaded in {time.perf_counter() - start:.2f} s")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def clip_tok(pipe):
    return pipe.tokenizer


@pytest.fixture(scope="module")
def t5_tok(pipe):
    return pipe.tokenizer_2


# --- the folder -------------------------------------------------------------------------


def test_folder_layout_and_size():
    path = tiny_flux_path()
    assert path == TINY_FLUX_PATH and (path / "model_index.json").is_file()
    for name in COMPONENTS:
        assert (path / name).is_dir(), name
    total = sum((path / f).stat().st_size for f in _files(path))
    assert total < 16_000_000, f"tiny preset is {total / 1e6:.2f} MB"  # the whole package must stay under 30 MB


def test_model_files_are_safetensors_only():
    path = tiny_flux_path()
    files = _files(path)
    for name in MODELS:
        weights = [f for f in files if f.startswith(name + "/") and f.endswith(".safetensors")]
        assert len(weights) == 1, (name, weights)
    pickled = [f for f in files if re.search(r"\.(bin|pt|pth|pkl|pickle|ckpt)$", f)]
    assert pickled == []


def test_missing_folder_raises_model_load_error(monkeypatch, tmp_path):
    monkeypatch.setattr(tiny_module, "TINY_FLUX_PATH", tmp_path / "absent")
    with pytest.raises(ModelLoadError, match=r"scripts/build_tiny_preset\.py"):
        tiny_module.tiny_flux_path()


def test_defaults():
    assert TINY_DEFAULTS == {
        "height": 128, "width": 128, "num_inference_steps": 8, "guidance_scale": 3.5, "max_sequence_length": 48,
    }


# --- diffusers loads and runs it ----------------------------------------------------------


def test_components_match_flux(pipe):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.text_encoder_2, T5EncoderModel)
    assert isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.tokenizer_2, T5TokenizerFast)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)

    assert pipe.vae_scale_factor == 8
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.latent_channels
    assert pipe.transformer.config.pooled_projection_dim == pipe.text_encoder.config.hidden_size
    assert pipe.transformer.config.joint_attention_dim == pipe.text_encoder_2.config.d_model
    # FLUX normalises latents with data statistics; the tiny VAE's come from SubjectWorld renders
    # (scripts/build_tiny_preset.py writes FLUX.1-dev's 0.3611 / 0.1159 until training replaces them).
    from smg_sdk.data.subjectworld import SubjectWorld

    pixels = torch.stack([torch.from_numpy(s.target_pixels).permute(2, 0, 1) for s in SubjectWorld(
        "heldout", seed=3).samples(8)]).float() / 127.5 - 1
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mode()
    scaled = (latents - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    assert 0.8 < float(scaled.std()) < 1.25 and abs(float(scaled.mean())) < 0.25
    sched = pipe.scheduler.config
    assert (sched.shift, sched.use_dynamic_shifting, sched.base_shift, sched.max_shift) == (3.0, True, 0.5, 1.15)
    assert (sched.base_image_seq_len, sched.max_image_seq_len) == (256, 4096)

    # Every token id has an embedding; the CLIP pooler finds the real end-of-text token.
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder_2.config.vocab_size == len(pipe.tokenizer_2)
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id
    assert pipe.tokenizer.model_max_length == 77 and pipe.tokenizer_2.model_max_length == 512
    assert (pipe.tokenizer_2.pad_token_id, pipe.tokenizer_2.eos_token_id, pipe.tokenizer_2.unk_token_id) == (0, 1, 2)


def test_generates_an_image(pipe):
    import torch

    kwargs = dict(height=64, width=64, num_inference_steps=2, max_sequence_length=64, guidance_scale=3.5)
    out = pipe("a photo of a dog on the beach", generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)
    assert out.images.shape == (1, 64, 64, 3)
    assert np.isfinite(out.images).all()

    prompt = "a red backpack to the left of a teapot"
    image = pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    assert image.size == (64, 64) and image.mode == "RGB"


# --- tokenizers -----------------------------------------------------------------------------

_fuzz = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(text=st.text())
def test_tokenizers_take_any_text(clip_tok, t5_tok, text):
    clip = clip_tok(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
    assert len(clip) == 77 and max(clip) < len(clip_tok)
    # Byte-level BPE: every character has a symbol, nothing maps to the unknown token
    # (which is <|endoftext|>, so only the end marker and the padding may use that id).
    assert clip_tok(text, add_special_tokens=False)["input_ids"].count(clip_tok.unk_token_id) == 0
    t5 = t5_tok(text, padding="max_length", max_length=64, truncation=True)["input_ids"]
    assert len(t5) == 64 and max(t5) < len(t5_tok)


_words = st.from_regex(r"[a-z]{1,12}( [a-z]{1,12}){0,5}", fullmatch=True)


@_fuzz
@given(text=_words)
def test_ascii_words_round_trip(clip_tok, t5_tok, text):
    assert clip_tok.decode(clip_tok(text)["input_ids"], skip_special_tokens=True) == text
    ids = t5_tok(text)["input_ids"]
    assert t5_tok.unk_token_id not in ids
    assert t5_tok.decode(ids, skip_special_tokens=True) == text


def test_t5_keeps_case_and_punctuation(t5_tok):
    text = "A photo of Dog #1, (left) & a Mug: 50% zoom!"
    ids = t5_tok(text)["input_ids"]
    assert t5_tok.unk_token_id not in ids and ids[-1] == t5_tok.eos_token_id
    assert t5_tok.decode(ids, skip_special_tokens=True) == text


def test_t5_offsets_mapping(t5_tok):
    text = "a sks dog to the left of a chrysanthemum"
    enc = t5_tok(text, return_offsets_mapping=True)
    assert len(enc["offset_mapping"]) == len(enc["input_ids"])
    tokens = t5_tok.convert_ids_to_tokens(enc["input_ids"])
    for token, (start, end) in zip(tokens, enc["offset_mapping"]):
        if token == t5_tok.eos_token:
            assert (start, end) == (0, 0)
        elif token != "▁":
            assert text[start:end] == token.lstrip("▁"), (token, start, end)
    # Each word's pieces cover exactly that word.
    spans = {}
    for (start, end), word in zip(enc["offset_mapping"], enc.word_ids()):
        if word is not None:
            lo, hi = spans.get(word, (start, end))
            spans[word] = (min(lo, start), max(hi, end))
    assert [text[a:b] for a, b in (spans[w] for w in sorted(spans))] == text.split()


def test_t5_splits_rare_words_keeps_common_ones(t5_tok):
    corpus_words = {w for line in _load_build_script().corpus_lines() for w in line.split() if w.isalpha()}
    split = sorted(w for w in corpus_words if len(t5_tok.tokenize(w)) >= 2)
    assert split, "no corpus word splits into several T5 pieces"
    assert len(t5_tok.tokenize("chrysanthemum")) >= 2
    for common in ["dog", "cat", "backpack", "teapot", "left", "right", "above", "below", "photo"]:
        assert t5_tok.tokenize(common) == ["▁" + common]


def test_clip_vocab_files(clip_tok):
    import json

    folder = tiny_flux_path() / "tokenizer"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == clip_tok.get_vocab()
    assert {"<|startoftext|>", "<|endoftext|>"} <= vocab.keys()
    assert (folder / "merges.txt").read_text(encoding="utf-8").startswith("#version:")


# --- the build is deterministic -------------------------------------------------------------


def test_build_is_deterministic(tmp_path):
    """Two builds in two processes give the same files, byte for byte.

    Compared with each other, not with the shipped folder, whose weights the SubjectWorld
    training replaces; the shipped folder must still have the same set of files.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(tmp_path / "a" / "flux")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _load_build_script().build(tmp_path / "b" / "flux")  # this process, meanwhile
        # Building over an existing folder replaces it.
        (tmp_path / "b" / "flux" / "stale.txt").write_text("left over")
        _load_build_script().build(tmp_path / "b" / "flux")
    finally:
        log, _ = child.communicate(timeout=120)
    assert child.returncode == 0, log

    a, b = tmp_path / "a" / "flux", tmp_path / "b" / "flux"
    assert _files(a) == _files(b) == _files(tiny_flux_path())
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["flux"]  # no temp folders left
    for name in sorted(_files(a)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_shipped_configs_name_the_preset_folders_not_a_training_run():
    """``scripts/ship_tiny_preset.py`` rewrites ``_name_or_path``: no local run path ships in a config."""
    import json

    flux = tiny_module.tiny_flux_path()
    for config in sorted(flux.glob("*/config.json")):
        recorded = json.loads(config.read_text()).get("_name_or_path")
        assert recorded in (None, f"smg_sdk/presets/tiny/flux/{config.parent.name}"), (config, recorded)
