"""Squeeze-MLLM end to end on the tiny preset: encoder, DLA, VAE identity, multi-stage, training."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import make_image
from smg_plugins.squeeze_mllm.encoder import instruction_text, selected_layers
from smg_plugins.squeeze_mllm.training import SqueezeTrainingPlan, train_stage1, train_stage2
from smg_sdk import Subject, SubjectPipeline
from smg_sdk.training import TrainingSample
from smg_sdk.types import Request
from smg_sdk.presets.tiny import TINY_DEFAULTS

DEFAULT_SIZE = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"])  # the tiny preset's default image size

SIZE = dict(height=64, width=64)


@pytest.fixture()
def squeeze():
    pipe = SubjectPipeline.from_preset("squeeze-tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def subjects():
    return [Subject(make_image(0), "dog"), Subject(make_image(1), "backpack")]


def test_selected_layers():
    assert selected_layers(9, 3) == [3, 6, 9]
    assert selected_layers(10, 3) == [3, 6, 9, 10]
    assert selected_layers(2, 3) == [2]


def test_instruction_points_at_pictures():
    request = Request("<1> next to <2>", subjects(), height=64, width=64)
    assert instruction_text(request) == "the dog from Picture 1 next to the backpack from Picture 2"


def test_encoder_emits_tagged_raw_layers(squeeze):
    encoder = squeeze.encoders[1]
    request = squeeze.make_request("a photo of <1> next to <2>", subjects())
    raw = encoder.encode(request, squeeze.backend).get("mllm-raw")
    layers = encoder.layers
    assert raw.side == "raw" and raw.meta["layers"] == layers
    assert raw.tokens.shape[:2] == (1, len(layers))
    modality, subject = raw.meta["modality"], raw.meta["subject"]
    assert modality.shape == subject.shape == (raw.tokens.shape[2],)
    assert set(subject[modality == 1].tolist()) == {0, 1}  # image tokens of both pictures
    assert (subject[modality == 0] == -1).all()
    # the chat template's prefix (system prompt, user-turn header) is dropped, nothing else
    inputs = encoder.mllm.build_inputs(instruction_text(request), [s.pil() for s in request.subjects],
                                       image_size=encoder.image_size)
    assert inputs.prefix_length > 0
    assert raw.tokens.shape[2] == inputs.modality.shape[0] - inputs.prefix_length


def test_generates_end_to_end_with_phases(squeeze):
    out = squeeze("a photo of <1> next to <2> on the beach", subjects(), seed=0, num_inference_steps=4, **SIZE)
    assert out.images[0].size == (64, 64)
    refs = [{k: v for k, v in step.items() if k.startswith("ref")} for step in out.trace]
    mllm = [step["mllm"] for step in out.trace]
    assert refs[0] == {"ref1": 0.0, "ref2": 0.0}  # step 0: semantics only
    assert refs[2] == {"ref1": 1.0, "ref2": 1.0} and mllm[2] == 1.0  # middle: both
    assert mllm[3] == 0.5  # late: identity emphasis
    assert "encode" in out.timings and "denoise" in out.timings


def test_constant_schedule_option_weighs_every_stream_one_at_every_step():
    pipe = SubjectPipeline.from_preset("squeeze-tiny", schedule="constant")
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a photo of <1> next to <2> on the beach", subjects(), seed=0, num_inference_steps=4, **SIZE)
    assert type(pipe.schedule).__name__ == "ConstantSchedule"
    assert all(weight == 1.0 for step in out.trace for weight in step.values())  # the default's trace differs


def test_compose_by_name(squeeze):
    encoder = squeeze.encoders[1]
    pipe = SubjectPipeline.compose(
        backend=squeeze.backend,
        encoders=[("flux-text", {"t5": False}), ("squeeze-mllm", {"model": "tiny", "image_size": 64}),
                  ("vae-reference", {"mode": "concat", "position": "uno"})],
        aggregators=[("fixed-layers", {"in_dim": encoder.mllm.hidden_size, "out_dim": 32})],
        schedule=("multistage", {"semantic_until": 0.0, "identity_from": 1.0}),
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe("<1> on grass", [subjects()[0]], seed=1, num_inference_steps=2, **SIZE)
    assert out.images[0].size == (64, 64)


def dataset():
    return [TrainingSample([Subject(make_image(i), "dog")], "a photo of <1> on grass", make_image(20 + i))
            for i in range(3)]


def stage1_trainer(pipe, out, steps):
    from smg_plugins.squeeze_mllm.training import _aggregator, stage1_pipeline
    from smg_sdk.training import FlowMatchingTrainer, module_parameters

    plan = SqueezeTrainingPlan(output_dir=str(out), stage1_steps=steps, stage1_lr=3e-3, progress=False,
                               checkpoint_every=2)
    return FlowMatchingTrainer(stage1_pipeline(pipe), module_parameters("aggregator", _aggregator(pipe)),
                               dataset(), plan.config(1))


def test_stage1_lowers_loss_and_resumes_exactly(tmp_path):
    fresh = lambda: SubjectPipeline.from_preset("squeeze-tiny")  # noqa: E731
    trainer = stage1_trainer(fresh(), tmp_path / "full", 6)
    before = trainer.evaluate(dataset())
    full = trainer.train()
    after = trainer.evaluate(dataset())
    assert after < before, (before, after)
    stage1_trainer(fresh(), tmp_path / "split", 3).train()
    resumed = stage1_trainer(fresh(), tmp_path / "split", 6)
    result = resumed.train(resume=True)
    assert result.losses == pytest.approx(full.losses[3:], abs=1e-6)
    for name, value in trainer.state_tensors().items():
        assert torch.allclose(resumed.state_tensors()[name], value, atol=1e-6), name


def test_trained_weights_save_and_reload(squeeze, tmp_path):
    plan = SqueezeTrainingPlan(output_dir=str(tmp_path / "train"), stage1_steps=1, stage2_steps=1, progress=False)
    train_stage1(squeeze, dataset(), plan)
    train_stage2(squeeze, dataset(), plan)
    call = dict(seed=3, num_inference_steps=3, output_type="latent", **SIZE)
    before = squeeze("a photo of <1> next to <2>", subjects(), **call).images
    folder = squeeze.save_pretrained(tmp_path / "saved")
    loaded = SubjectPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    after = loaded("a photo of <1> next to <2>", subjects(), **call).images
    assert torch.allclose(before, after, atol=1e-6)


def test_cli_generate_with_squeeze_preset(tmp_path):
    make_image(0).save(tmp_path / "a.png")
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [sys.executable, "-m", "smg_sdk.cli", "generate", "--preset", "squeeze-tiny", "--prompt", "<1> on a beach",
         "--subject", f"{tmp_path / 'a.png'}:dog", "--out", str(out), "--steps", "2", "--quiet"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == DEFAULT_SIZE
