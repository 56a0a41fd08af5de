"""Inputs a new user tried on placement, the encoding cache, compact references, plan-memory and convert-weights."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import SubjectPipeline
from smg_sdk.errors import ConditionError, ConfigError, PlacementError, RequestError

CALL = dict(seed=0, num_inference_steps=1, height=64, width=64, output_type="np")


@pytest.fixture(scope="module")
def pipe():
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_every_loader_reads_dtype_names_the_same_way():
    from smg_plugins.aligngen.redux import ReduxEncoder
    from smg_sdk import load_mllm, parse_dtype
    from smg_sdk.errors import ModelLoadError
    from smg_sdk.presets.tiny import tiny_qwen_vl_path

    for name in ("bf16", "BF16", "bfloat16", "torch.bfloat16", torch.bfloat16):
        assert parse_dtype(name) is torch.bfloat16
    with pytest.raises(ModelLoadError, match="torch_dtype 'half-ish'"):
        load_mllm(str(tiny_qwen_vl_path()), torch_dtype="half-ish", reuse=False)
    with pytest.raises(ConditionError, match="redux torch_dtype 'int8'"):
        ReduxEncoder(torch_dtype="int8")
    assert ReduxEncoder(torch_dtype="bf16").vision.dtype is torch.bfloat16  # the short name, as the presets take


def test_placement_takes_dtype_names_and_names_bad_devices_and_dtypes(pipe):
    with pytest.raises(PlacementError, match="device 'gpu' is not a torch device"):
        pipe.place(device="gpu")
    if not torch.accelerator.is_available():
        with pytest.raises(PlacementError, match="device 'cuda'.*only cpu"):
            pipe.to("cuda")
    with pytest.raises(PlacementError, match="floating-point"):
        pipe.to(dtype=torch.int8)
    with pytest.raises(RequestError, match="dtype 'int4'"):
        pipe.to(dtype="int4")
    with pytest.raises(PlacementError, match="num_blocks_per_group"):
        pipe.enable_group_offload(onload_device="cpu", num_blocks_per_group=1.5)
    with pytest.raises(PlacementError, match="use_stream=True"):
        pipe.enable_group_offload(onload_device="cpu", use_stream=True)
    with pytest.raises(PlacementError, match="offload_device 'nope'"):
        pipe.enable_group_offload(onload_device="cpu", offload_device="nope")
    pipe.place(device="cpu", dtype="bf16")
    try:
        assert pipe.backend.transformer.dtype == torch.bfloat16
    finally:
        pipe.to(dtype="fp32")
    assert pipe.backend.transformer.dtype == torch.float32


def test_encoding_cache_attribute_takes_what_the_constructor_takes(pipe):
    ref = Image.new("RGB", (64, 64), "red")
    for option in (False, True, None):
        pipe.encoding_cache = option
        assert (pipe.encoding_cache is None) == (option is not True)
        pipe("a photo of <1>", [ref], **CALL)
    for bad in (0, 2.5, "yes"):
        with pytest.raises(ConfigError, match="encoding_cache"):
            pipe.encoding_cache = bad
    pipe.encoding_cache = True


def test_reference_scale_changed_after_construction_applies_and_is_checked():
    pipe = SubjectPipeline.from_preset("tiny", reference_mode="cached")
    pipe.set_progress_bar_config(disable=True)
    ref = [Image.new("RGB", (64, 64), "red")]
    encoder = next(e for e in pipe.encoders if hasattr(e, "reference_scale"))
    full = pipe("a photo of <1>", ref, **CALL).images
    encoder.reference_scale = 0.5
    half = pipe("a photo of <1>", ref, **CALL).images
    built = SubjectPipeline.from_preset("tiny", reference_mode="cached", reference_scale=0.5)
    built.set_progress_bar_config(disable=True)
    assert not np.array_equal(full, half) and np.array_equal(half, built("a photo of <1>", ref, **CALL).images)
    encoder.reference_scale = 0.3
    with pytest.raises(ConditionError, match="reference_scale must be 1/n"):
        pipe("a photo of <1>", ref, **CALL)


def test_plan_memory_refuses_zero_size_and_negative_rank():
    from smg_sdk.backends.flux.memory import Request, plan_memory
    from smg_sdk.cli import main

    assert main(["plan-memory", "--preset", "tiny", "--height", "0"]) == 2
    with pytest.raises(RequestError, match="--lora-rank"):
        plan_memory("tiny", dtype="fp32", request=Request(height=128, width=128), lora_rank=-4)


def test_convert_weights_files_are_readable_like_any_new_file(tmp_path):
    from smg_sdk.cli import main

    torch.save({"w": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    assert main(["convert-weights", str(tmp_path)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o666 & ~umask


def test_a_flux_folder_under_home_is_found_with_a_tilde(tmp_path, monkeypatch):
    from smg_sdk import FluxBackend
    from smg_sdk.presets.tiny import tiny_flux_path

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "flux").symlink_to(tiny_flux_path(), target_is_directory=True)
    assert FluxBackend.from_pretrained("~/flux", max_sequence_length=32).transformer is not None


def test_reference_lora_preset_names_a_missing_lora_path(tmp_path):
    from smg_sdk.errors import ModelLoadError
    from smg_sdk.presets.tiny import tiny_flux_path

    with pytest.raises(ModelLoadError, match="lora_path: no file or folder at"):
        SubjectPipeline.from_preset("reference-lora", path=str(tiny_flux_path()), lora_path=str(tmp_path / "l.safetensors"),
                                    dtype="fp32")
