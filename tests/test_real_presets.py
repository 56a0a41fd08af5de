"""The reference-lora (omini) real-model preset, loaded from a FLUX.1-dev-layout folder (the tiny one), with
its memory options: the same image as the tiny preset on the same weights, dtype and offload honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import PlacementError, RequestError, SubjectPipeline
from smg_sdk.presets.tiny import tiny_flux_path, tiny_subject_lora_path


def _image(pipe: SubjectPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=2, height=64,
                width=64, output_type="np").images


def test_reference_lora_preset_matches_the_tiny_preset_and_offloads():
    from accelerate.hooks import CpuOffload

    if tiny_subject_lora_path() is None:
        pytest.skip("this install ships no tiny subject LoRA")
    tiny = _image(SubjectPipeline.from_preset("tiny", reference_mode="concat", position="kontext"))
    pipe = SubjectPipeline.from_preset("omini", path=str(tiny_flux_path()), lora_path=str(tiny_subject_lora_path()),
                                       dtype="fp32", position="kontext", max_sequence_length=48,
                                       device="cpu", offload="model")
    assert isinstance(pipe.backend.transformer._hf_hook, CpuOffload)
    assert pipe.defaults["num_inference_steps"] == 28
    np.testing.assert_array_equal(_image(pipe), tiny)


def test_reference_lora_preset_dtype_and_bad_options():
    pipe = SubjectPipeline.from_preset("reference-lora", path=str(tiny_flux_path()), dtype="bf16", device="cpu")
    assert {p.dtype for p in pipe.backend.transformer.parameters()} == {torch.bfloat16}
    assert np.isfinite(_image(pipe)).all()
    with pytest.raises(RequestError, match="dtype 'int3'"):
        SubjectPipeline.from_preset("reference-lora", path=str(tiny_flux_path()), dtype="int3")
    with pytest.raises(PlacementError, match="offload must be"):
        pipe.place("cpu", offload="disk")
