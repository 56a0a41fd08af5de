"""``dtype=`` (not the deprecated ``torch_dtype=``) and quantization configs reach diffusers/transformers intact.

No quantization backend runs on this CPU machine (bitsandbytes needs CUDA; torchao, GGUF and
quanto are not installed), so the tests check that the very config object reaches the
library's own ``from_pretrained`` and that the library's refusal comes back as a
:class:`ModelLoadError` naming the backend. The spies record the call and then run the
real method.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from smg_sdk import FluxBackend, ModelLoadError, load_mllm, tiny_flux_path, tiny_qwen_vl_path


def _spy(monkeypatch, cls, calls: list[dict]) -> None:
    original = cls.from_pretrained.__func__

    def recording(klass, *args, **kwargs):
        calls.append(kwargs)
        return original(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))


def test_flux_backend_loads_with_dtype_without_the_deprecated_name():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = FluxBackend.from_pretrained(tiny_flux_path(), dtype=torch.bfloat16, max_sequence_length=16)
    assert not [w for w in caught if "torch_dtype" in str(w.message)]
    for name, module in backend.modules().items():
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}, name
    with pytest.raises(ModelLoadError, match="not both"):
        FluxBackend.from_pretrained(tiny_flux_path(), dtype=torch.float32, torch_dtype=torch.float32)


def test_flux_quantization_config_reaches_diffusers_intact(monkeypatch):
    from diffusers import FluxPipeline, PipelineQuantizationConfig

    config = PipelineQuantizationConfig(quant_backend="bitsandbytes_4bit", quant_kwargs={"load_in_4bit": True},
                                        components_to_quantize=["transformer", "text_encoder_2"])
    calls: list[dict] = []
    _spy(monkeypatch, FluxPipeline, calls)
    with pytest.raises(ModelLoadError, match="bitsandbytes"):  # diffusers' own check: no bitsandbytes here
        FluxBackend.from_pretrained(tiny_flux_path(), dtype=torch.bfloat16, quantization_config=config)
    (kwargs,) = calls
    assert kwargs["quantization_config"] is config and kwargs["dtype"] is torch.bfloat16
    assert "torch_dtype" not in kwargs


def test_mllm_quantization_config_reaches_transformers_intact(monkeypatch):
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    calls: list[dict] = []
    _spy(monkeypatch, AutoModelForImageTextToText, calls)
    with pytest.raises(ModelLoadError, match="bitsandbytes"):  # transformers' own check
        load_mllm(tiny_qwen_vl_path(), dtype=torch.bfloat16, quantization_config=config, reuse=False)
    assert calls and calls[0]["quantization_config"] is config and calls[0]["dtype"] is torch.bfloat16
