"""The reference-lora (omini) real-model preset, loaded from a FLUX.1-dev-layout folder (the tiny one), with
its memory options: the same image as the tiny preset on the same weights, dtype and offload honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import ConditionError, PlacementError, RequestError, SubjectPipeline
from smg_sdk.presets.tiny import tiny_flux_path, tiny_subject_lora_path


def _image(pipe: SubjectPipeline, **call) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=2, height=64,
                width=64, output_type="np", **call).images


def test_reference_lora_preset_matches_the_tiny_preset_and_offloads():
    from accelerate.hooks import CpuOffload

    if tiny_subject_lora_path() is None:
        pytest.skip("this install ships no tiny subject LoRA")
    tiny = _image(SubjectPipeline.from_preset("tiny", reference_mode="concat", position="kontext"),
                  true_cfg_scale=1.0)  # the tiny preset's default true CFG off: omini has none
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


# ---------------------------------------------------------------- squeeze, music, aligngen, composed
# on the published layouts rebuilt at tiny width (tests/real_layouts.py)

@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    import real_layouts

    root = tmp_path_factory.mktemp("real")
    return {"flux": str(real_layouts.flux_dev(root)), "qwen": str(real_layouts.qwen25_vl(root)),
            "clip": str(real_layouts.clip_vit_large(root)), "redux": str(real_layouts.flux_redux_dev(root)),
            "root": root}


def _offload_gives_the_same_image(pipe: SubjectPipeline, **call) -> np.ndarray:
    """The image before and after ``pipe.place("cpu", offload="model")`` (asserted identical)."""
    from accelerate.hooks import CpuOffload

    plain = _image(pipe, **call)
    pipe.place("cpu", offload="model")
    assert all(isinstance(m._hf_hook, CpuOffload) for m in pipe.placement_inventory().models.values())
    np.testing.assert_array_equal(_image(pipe, **call), plain)
    return plain


def test_squeeze_preset_loads_the_trained_files_as_squeeze_tiny_and_offloads(folders):
    from safetensors.torch import save_file

    from smg_sdk import TINY_DEFAULTS

    tiny = SubjectPipeline.from_preset("squeeze-tiny")
    expected = _image(tiny)
    root = folders["root"]
    lora = tiny.backend.save_adapter("squeeze-identity", root / "identity")
    save_file(tiny.aggregators[0].state_dict(), str(root / "dla.safetensors"))
    pipe = SubjectPipeline.from_preset("squeeze", path=folders["flux"], mllm_path=folders["qwen"],
                                       aggregator_path=str(root / "dla.safetensors"), identity_lora_path=str(lora),
                                       dtype="fp32", image_size=64,
                                       max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    assert pipe.defaults["num_inference_steps"] == 28
    # squeeze-tiny also carries the tiny preset's (unrouted) subject LoRA: equal up to float rounding
    np.testing.assert_allclose(_offload_gives_the_same_image(pipe), expected, atol=1e-5)
    with pytest.raises(ConditionError, match="aggregator_path: no file"):
        SubjectPipeline.from_preset("squeeze", path=folders["flux"], mllm_path=folders["qwen"],
                                    aggregator_path=str(root / "missing.safetensors"))


def test_squeeze_preset_in_bf16_loads_the_mllm_in_bf16_on_the_device(folders):
    pipe = SubjectPipeline.from_preset("squeeze", path=folders["flux"], mllm_path=folders["qwen"], dtype="bf16",
                                       device="cpu", image_size=64, max_sequence_length=48)
    encoder = pipe.encoders[1]
    assert (encoder.dtype, encoder.device) == ("bfloat16", "cpu")
    assert encoder.mllm.model.dtype == torch.bfloat16
    assert {p.dtype for p in pipe.backend.transformer.parameters()} == {torch.bfloat16}
    assert np.isfinite(_image(pipe)).all()


def test_music_preset_plans_verifies_and_offloads(folders):
    pipe = SubjectPipeline.from_preset("music", path=folders["flux"], planner_path=folders["qwen"],
                                       clip_path=folders["clip"], dtype="fp32", max_sequence_length=48,
                                       image_size=64, max_attempts=1, max_new_tokens=16)
    assert pipe.planner.model_path == folders["qwen"] and pipe.verifier.source == folders["clip"]
    assert pipe.defaults["guidance_scale"] == 3.5
    _offload_gives_the_same_image(pipe, num_candidates=2)
    assert "verifier.clip.model" in pipe.placement_inventory().models


def test_music_preset_in_bf16_loads_planner_and_verifier_in_bf16(folders):
    pipe = SubjectPipeline.from_preset("music", path=folders["flux"], planner_path=folders["qwen"],
                                       clip_path=folders["clip"], dtype="bf16", device="cpu", max_sequence_length=48,
                                       image_size=64, max_attempts=1, max_new_tokens=16)
    models = pipe.placement_inventory().models
    assert {name: m.dtype for name, m in models.items() if name.startswith(("planner", "verifier"))} == {
        "planner.mllm.model": torch.bfloat16, "verifier.clip.model": torch.bfloat16}
    assert np.isfinite(_image(pipe)).all()


def test_aligngen_preset_memory_options_and_the_older_torch_dtype(folders):
    pipe = SubjectPipeline.from_preset("aligngen", path=folders["flux"], redux_path=folders["redux"],
                                       torch_dtype="float32", max_sequence_length=48)
    assert {p.dtype for p in pipe.backend.transformer.parameters()} == {torch.float32}
    _offload_gives_the_same_image(pipe)
    bf16 = SubjectPipeline.from_preset("aligngen", path=folders["flux"], redux_path=folders["redux"], device="cpu",
                                       max_sequence_length=48)
    assert {p.dtype for p in bf16.backend.transformer.parameters()} == {torch.bfloat16}  # the default
    with pytest.raises(ConditionError, match="not both"):
        SubjectPipeline.from_preset("aligngen", path=folders["flux"], redux_path=folders["redux"], dtype="bf16",
                                    torch_dtype="float32")


def test_composed_preset_runs_all_three_methods_and_offloads(folders):
    quick = {"max_attempts": 1, "max_new_tokens": 16}
    pipe = SubjectPipeline.from_preset("composed", path=folders["flux"], redux_path=folders["redux"],
                                       mllm_path=folders["qwen"], clip_path=folders["clip"], dtype="fp32",
                                       image_size=64, max_sequence_length=48, planner_settings=quick)
    names = [type(c).__name__ for c in (*pipe.encoders, *pipe.aggregators, *pipe.rules)]
    assert names[-1] == "LayoutAttentionRule" and "MLLMConditionEncoder" in names and "ReduxEncoder" in names
    assert pipe.planner.mllm is pipe.encoders[-1].mllm  # one Qwen2.5-VL for the encoder and the planner
    _offload_gives_the_same_image(pipe, num_candidates=2)
    bf16 = SubjectPipeline.from_preset("composed", path=folders["flux"], redux_path=folders["redux"],
                                       mllm_path=folders["qwen"], clip_path=folders["clip"], image_size=64,
                                       max_sequence_length=48, device="cpu", planner_settings=quick)
    assert np.isfinite(_image(bf16)).all()


def test_wrong_files_for_real_preset_paths_are_named(folders, tmp_path):
    from smg_plugins.aligngen.redux import redux_folders
    from smg_sdk import ModelLoadError
    from smg_sdk.eval.clip import ClipEmbedder

    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("not a model")
    for redux, says in ((tmp_path / "empty", "a folder with neither"), (tmp_path / "file.txt", "a file"),
                        (tmp_path / "gone", "missing")):
        with pytest.raises(ModelLoadError, match=f"redux_path .* is not a Redux folder \\(it is {says}"):
            redux_folders(None, redux)
    with pytest.raises(ModelLoadError, match="holds a 'qwen2_5_vl' model, not CLIP"):
        ClipEmbedder(model_path=folders["qwen"]).load()
    (tmp_path / "dla.bin").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ConditionError, match="aggregator_path .*dla.bin.* is not a 'dla' aggregator's safetensors"):
        SubjectPipeline.from_preset("squeeze", path=folders["flux"], mllm_path=folders["qwen"],
                                    aggregator_path=str(tmp_path / "dla.bin"), dtype="fp32", max_sequence_length=48)
