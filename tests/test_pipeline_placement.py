"""SubjectPipeline.to: the pipeline owns placement of the backend and of every component's models."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from smg_sdk import SubjectPipeline


def _float_params(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.is_floating_point()}


def test_to_casts_backend_and_runs():
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.to(dtype=torch.bfloat16) is pipe
    for name, module in pipe.backend.modules().items():
        assert _float_params(module) == {torch.bfloat16}, name
    assert pipe.backend.dtype == torch.bfloat16
    out = pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=2,
               output_type="np")
    assert np.isfinite(out.images).all()
    pipe.to(dtype=torch.float32)
    assert all(_float_params(m) == {torch.float32} for m in pipe.backend.modules().values())


def test_to_moves_models_held_by_components():
    pipe = SubjectPipeline.from_preset("squeeze-tiny")
    pipe.to(dtype=torch.float64)
    mllm = pipe.encoders[[type(e).__name__ for e in pipe.encoders].index("MLLMConditionEncoder")].mllm
    assert _float_params(mllm.model) == {torch.float64}
    modules = [c for c in pipe.components if isinstance(c, torch.nn.Module)]
    assert modules, "the squeeze preset has learnable aggregators"
    for component in modules:
        assert _float_params(component) <= {torch.float64}, type(component).__name__
    assert _float_params(pipe.backend.modules()["transformer"]) == {torch.float64}
    for name, module in pipe.placement_inventory().all().items():  # every module any component holds
        assert _float_params(module) <= {torch.float64}, name


def test_moving_and_calling_log_no_float32_cast_warning(capfd):
    """diffusers' ModelMixin.to (0.42) warns "should be kept in float32" whenever ``dtype`` is passed, even as
    None: a move without a cast, and the no-argument ``to()`` every call makes to load lazy models, must not pass it
    (the aligngen preset's Redux model printed it once per request)."""
    pipe = SubjectPipeline.from_preset("aligngen-tiny")
    pipe.set_progress_bar_config(disable=True)
    capfd.readouterr()
    pipe.to("cpu")
    pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=1, output_type="np")
    assert "should be kept in float32" not in capfd.readouterr().err
