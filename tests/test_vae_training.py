"""The VAE trainer: exact resume, export, pre-encoded latents, config validation (no long training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from smg_sdk.errors import SMGError
from smg_sdk.training.vae import (
    VAEConfig,
    WorldImages,
    encode_latents,
    export_vae,
    learning_rate,
    load_latents,
    load_trained_vae,
    psnr,
    train_vae,
)


def tiny_config(out, **overrides) -> VAEConfig:
    base = dict(output_dir=str(out), max_steps=3, batch_size=2, side=64, crop=32, block_out_channels=(8, 8, 8, 8),
                latent_channels=4, eval_every=2, eval_samples=2, checkpoint_every=1, keep_checkpoints=5,
                threads=1, export=False, progress=False, warmup_steps=1)
    base.update(overrides)
    return VAEConfig(**base)


def weights(checkpoint) -> dict[str, torch.Tensor]:
    return load_trained_vae(checkpoint)[0].state_dict()


def test_resume_after_step_two_is_bit_identical(tmp_path):
    straight = train_vae(tiny_config(tmp_path / "a"), log=lambda _: None)
    train_vae(tiny_config(tmp_path / "b", max_steps=2), log=lambda _: None)
    resumed = train_vae(tiny_config(tmp_path / "b"), log=lambda _: None)
    assert straight.name == resumed.name == "checkpoint-3"
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = json.loads((resumed / "state.json").read_text())
    assert state["history"]["step"] == [2, 3]


def test_budget_stops_with_a_checkpoint(tmp_path):
    path = train_vae(tiny_config(tmp_path, max_steps=50, budget_minutes=1e-6), log=lambda _: None)
    assert path.name == "checkpoint-1"


def test_training_images_are_seeded_by_step_and_index(tmp_path):
    data = WorldImages(tiny_config(tmp_path))
    assert data.batch(5).shape == (2, 3, 32, 32)
    assert torch.equal(data.batch(5), WorldImages(tiny_config(tmp_path)).batch(5))
    assert not torch.equal(data.batch(5), data.batch(6))


def test_export_and_latent_file_round_trip(tmp_path):
    checkpoint = train_vae(tiny_config(tmp_path / "run", max_steps=1), log=lambda _: None)
    folder = export_vae(checkpoint, tmp_path / "vae", stats_samples=4, eval_samples=2)
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert config["scaling_factor"] == metrics["scaling_factor"] > 0
    assert (folder / "diffusion_pytorch_model.safetensors").is_file() and (folder / "recon.png").is_file()

    path = encode_latents(folder, tmp_path / "latents.safetensors", start=3, count=2, kind="reference", side=64,
                          subjects=(2,))
    tensors, meta = load_latents(path)
    assert tensors["target"].shape == (2, 4, 8, 8) and tensors["target"].dtype == torch.float16
    assert tensors["index"].tolist() == [3, 4]
    assert tensors["reference"].shape == (4, 4, 8, 8)
    assert tensors["reference_sample"].tolist() == [0, 0, 1, 1]
    assert tensors["reference_subject"].tolist() == [1, 2, 1, 2]
    assert meta["start"] == 3 and meta["kind"] == "reference" and meta["scaling_factor"] == config["scaling_factor"]

    captions, _ = load_latents(encode_latents(folder, tmp_path / "c.safetensors", 0, 1, kind="caption", side=64))
    assert set(captions) == {"target", "index"}


@pytest.mark.parametrize("field, value", [
    ("crop", 36), ("crop", 256), ("loss", "huber"), ("learning_rate", 0.0), ("block_out_channels", (8, 12)),
    ("batch_size", 0), ("precision", "fp8"), ("budget_minutes", -1.0), ("posterior", "mean"),
])
def test_bad_config_names_the_field(tmp_path, field, value):
    with pytest.raises(SMGError, match=field):
        tiny_config(tmp_path, **{field: value})


def test_learning_rate_schedule():
    cfg = VAEConfig(output_dir="x", max_steps=100, learning_rate=1e-3, warmup_steps=10, decay_fraction=0.5,
                    min_lr_ratio=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 30) == pytest.approx(1e-3)
    assert learning_rate(cfg, 99) == pytest.approx(1e-4, rel=0.01)


def test_psnr():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    assert psnr(a, a + 1)[0] == pytest.approx(10 * np.log10(255.0 ** 2))
