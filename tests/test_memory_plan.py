"""smg plan-memory: parameter counts from configs alone match the loaded models; the published configs give
the published sizes; the offload and quantization arithmetic; the command and its errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from smg_sdk import ModelLoadError, RequestError
from smg_sdk.backends.flux.memory import (
    CUDA_CONTEXT, GIB, Request, fit_table, linear_bytes, plan_memory, quantized_linears, weight_bytes,
)
from smg_sdk.cli import main


def _loaded_tiny_models() -> dict[str, torch.nn.Module]:
    """The aligngen-tiny models loaded with their weights, as the presets load them (the reference)."""
    from diffusers import FluxPipeline
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipVisionModel

    from smg_sdk import tiny_flux_path, tiny_redux_path, tiny_siglip_path

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_path()), local_files_only=True)
    return {
        "transformer": pipe.transformer, "vae": pipe.vae, "text_encoder": pipe.text_encoder,
        "text_encoder_2": pipe.text_encoder_2,
        "siglip": SiglipVisionModel.from_pretrained(tiny_siglip_path(), local_files_only=True),
        "redux": ReduxImageEncoder.from_pretrained(tiny_redux_path(), local_files_only=True),
    }


def test_counts_from_configs_match_the_loaded_tiny_models():
    plan = plan_memory("aligngen-tiny", dtype="fp32")
    loaded = _loaded_tiny_models()
    assert [m.name for m in plan.models] == list(loaded)
    for row in plan.models:
        module = loaded[row.name]
        unique = {id(p): p for p in module.parameters()}.values()
        assert row.params == sum(p.numel() for p in unique), row.name
        real = sum(p.nbytes for p in unique) + sum(b.nbytes for b in module.buffers())
        assert row.weight_bytes == real, row.name  # fp32 weights as loaded, buffers included


def test_published_configs_give_the_published_sizes():
    """FLUX.1-dev 11.9 B, T5-XXL encoder 4.76 B, CLIP-L text 123 M, Qwen2.5-VL-7B 8.29 B, SigLIP so400m 428 M."""
    plan = plan_memory("composed")
    params = {m.name: m.params for m in plan.models}
    published = {"transformer": 11.90e9, "text_encoder_2": 4.762e9, "text_encoder": 123.1e6, "mllm": 8.292e9,
                 "siglip": 428.2e6, "clip": 427.6e6, "vae": 83.8e6}
    for name, expected in published.items():
        assert params[name] == pytest.approx(expected, rel=2e-3), name


def test_offload_and_quantization_arithmetic():
    base = plan_memory("squeeze")
    model = plan_memory("squeeze", offload="model")
    group = plan_memory("squeeze", offload="group")
    weights = {m.name: m for m in base.models}
    total = sum(m.weight_bytes for m in base.models)
    assert base.device_peak == total + max(m.activation_bytes for m in base.models) + CUDA_CONTEXT
    assert model.device_peak == max(m.weight_bytes + m.activation_bytes for m in base.models) + CUDA_CONTEXT
    assert model.peak_phase == "transformer" and model.cpu_peak == total == group.cpu_peak
    assert group.device_peak < 3 * GIB < model.device_peak < 24 * GIB < base.device_peak
    nf4 = {m.name: m for m in plan_memory("squeeze", quant="nf4").models}
    assert nf4["vae"].weight_bytes == weights["vae"].weight_bytes  # only the transformer, T5 and the MLLM
    assert 0.25 < nf4["transformer"].weight_bytes / weights["transformer"].weight_bytes < 0.3


def test_quantized_sizes_follow_bitsandbytes_layout():
    layer = torch.nn.Linear(128, 64)
    assert linear_bytes(layer, "nf4", 2) == 128 * 64 / 2 + 128 * 64 / 64 * 4  # 4 bit + fp32 absmax per 64
    assert linear_bytes(layer, "int8", 2) == 128 * 64 + 64 * 4  # int8 + fp32 scale per output row
    lm = torch.nn.Module()
    lm.body, lm.lm_head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 100)
    lm.get_output_embeddings = lambda: lm.lm_head
    assert list(quantized_linears(lm, "nf4").values()) == [lm.body]  # the output head stays in the dtype
    assert weight_bytes(lm, 2, "nf4") == linear_bytes(lm.body, "nf4", 2) + (8 + 800 + 100) * 2  # body bias, head


def test_requests_scale_the_activations():
    small = {m.name: m.activation_bytes for m in plan_memory("reference-lora", request=Request(512, 512)).models}
    large = {m.name: m.activation_bytes for m in plan_memory("reference-lora").models}
    assert large["vae"] == 4 * small["vae"]
    cached = {m.name: m for m in plan_memory("reference-lora", request=Request(reference_mode="cached")).models}
    kv = 2 * 57 * 4096 * 3072 * 2  # the 1024 px reference's keys and values in 57 blocks, bf16: ~2.9 GB
    assert kv / 1e9 == pytest.approx(2.87, abs=0.01)
    assert cached["transformer"].activation_bytes > kv


def test_plan_memory_command(capsys):
    assert main(["plan-memory", "--preset", "squeeze", "--dtype", "bf16", "--offload", "model", "--quant", "nf4"]) == 0
    out = capsys.readouterr().out
    assert "mllm" in out and "peak device:" in out and "peak cpu:" in out
    assert main(["plan-memory", "--preset", "aligngen-tiny"]) == 0
    assert "request 128x128" in capsys.readouterr().out


def test_plan_memory_errors(tmp_path, capsys):
    with pytest.raises(RequestError, match="--preset 'nope'"):
        plan_memory("nope")
    with pytest.raises(RequestError, match="--height"):
        plan_memory("squeeze", request=Request(height=1000))
    from smg_sdk.backends.flux.memory import PUBLISHED_ROOT

    shutil.copytree(PUBLISHED_ROOT / "flux", tmp_path / "flux")
    assert plan_memory("reference-lora", models=tmp_path).models[0].params > 11e9  # a root holding FLUX only
    with pytest.raises(ModelLoadError, match="qwen2_5_vl/config.json"):
        plan_memory("squeeze", models=tmp_path)
    assert main(["plan-memory", "--preset", "squeeze", "--models", str(tmp_path)]) == 2
    assert "qwen2_5_vl" in capsys.readouterr().err


@pytest.mark.parametrize("text, says", [("{not json", "cannot be read as JSON"), ("[1, 2]", "holds a list"),
                                        ('{"_class_name": "FluxTransformer2DModel", "num_layers": "two"}',
                                         "does not describe a buildable model")])
def test_plan_memory_names_a_malformed_config(tmp_path, capsys, text, says):
    from smg_sdk.backends.flux.memory import PUBLISHED_ROOT

    shutil.copytree(PUBLISHED_ROOT / "flux", tmp_path / "flux")
    (tmp_path / "flux" / "transformer" / "config.json").write_text(text)
    with pytest.raises(ModelLoadError, match=says):
        plan_memory("reference-lora", models=tmp_path)
    assert main(["plan-memory", "--preset", "reference-lora", "--models", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err


def test_fit_table_rows():
    table = fit_table(("squeeze",)).splitlines()
    assert table[0] == "| preset | offload | quant | device peak | CPU RAM | 16 GB | 24 GB | 48 GB | 80 GB |"
    none_row = table[2].split(" | ")
    assert none_row[:3] == ["| squeeze", "none", "none"] and none_row[-4:] == ["no", "no", "no", "yes |"]  # ~49 GiB
