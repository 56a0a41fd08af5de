"""The generic flow-matching trainer: it learns, checkpoints atomically, resumes exactly."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import make_image
from smg_sdk import Subject
from smg_sdk.backends.flux import FluxBackend
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.errors import RequestError
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.training import FlowMatchingTrainer, TrainerConfig, TrainerHook, TrainingSample, adapter_parameters


def dataset():
    return [
        TrainingSample([Subject(make_image(i), "dog")], "a photo of <1> on grass", make_image(10 + i))
        for i in range(3)
    ]


def make_trainer(tiny_path, out, mode="concat", steps=4, hooks=(), lr=5e-3):
    backend = FluxBackend.from_pretrained(tiny_path, max_sequence_length=32)
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=4, init_lora_weights="gaussian")
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode=mode, adapter="subject")])
    config = TrainerConfig(output_dir=str(out), max_steps=steps, learning_rate=lr, checkpoint_every=2,
                           progress=False)
    return FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "subject"), dataset(), config, hooks)


@pytest.mark.parametrize("mode", ["concat", "cached"])
def test_training_lowers_loss_on_fixed_batch(tiny_path, tmp_path, mode):
    trainer = make_trainer(tiny_path, tmp_path, mode=mode, steps=12, lr=3e-2)
    fixed = dataset()
    before = trainer.evaluate(fixed)
    trainer.train()
    after = trainer.evaluate(fixed)
    assert after < before * 0.97, (before, after)


def test_only_trainable_parameters_change(tiny_path, tmp_path):
    trainer = make_trainer(tiny_path, tmp_path, steps=2)
    base = {k: v.clone() for k, v in trainer.backend.transformer.state_dict().items() if "lora_" not in k}
    lora = {k: v.clone() for k, v in trainer.state_tensors().items()}
    trainer.train()
    after = trainer.backend.transformer.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert any(not torch.equal(trainer.state_tensors()[k], v) for k, v in lora.items())


def test_resume_matches_uninterrupted(tiny_path, tmp_path):
    full = make_trainer(tiny_path, tmp_path / "full", steps=4)
    full_result = full.train()
    first = make_trainer(tiny_path, tmp_path / "split", steps=2)
    first.train()
    second = make_trainer(tiny_path, tmp_path / "split", steps=4)
    second_result = second.train(resume=True)
    assert second_result.losses == pytest.approx(full_result.losses[2:], abs=1e-7)
    for name, value in full.state_tensors().items():
        assert torch.allclose(second.state_tensors()[name], value, atol=1e-7), name
    names = sorted(p.name for p in (tmp_path / "split").iterdir())
    assert names == ["checkpoint-2", "checkpoint-4"]  # nothing half-written left behind


def test_hooks_see_seeded_rng(tiny_path, tmp_path):
    seen = []

    class Record(TrainerHook):
        def on_sample(self, sample, rng: random.Random):
            seen.append(rng.random())
            return sample

    make_trainer(tiny_path, tmp_path / "a", steps=2, hooks=[Record()]).train()
    first = list(seen)
    seen.clear()
    make_trainer(tiny_path, tmp_path / "b", steps=2, hooks=[Record()]).train()
    assert seen == first and len(set(first)) == 2


@pytest.mark.parametrize("mode", ["concat", "cached"])
def test_batched_loss_equals_mean_of_sample_losses(tiny_path, tmp_path, mode, monkeypatch):
    """Stackable samples run as one transformer batch, each with its own seeded noise and level."""
    from smg_sdk.training import trainer as trainer_module

    trainer = make_trainer(tiny_path, tmp_path, mode=mode)
    trainer.config.batch_size = 3
    calls = []
    velocity = trainer.backend.velocity
    monkeypatch.setattr(trainer.backend, "velocity", lambda c, x, s, **k: calls.append(len(x)) or velocity(c, x, s, **k))
    with torch.no_grad():
        batched = trainer.batch_loss(step=5)
        assert calls == [3]
        singles = [trainer.sample_loss(trainer.sample_at(5, i),
                                       torch.Generator().manual_seed(trainer_module._seed(0, 5, i, 2)))
                   for i in range(3)]
    assert torch.allclose(batched, torch.stack(singles).mean(), rtol=1e-4, atol=1e-6)


def test_samples_group_by_structure_in_any_order(tiny_path, tmp_path):
    """One- and two-subject samples interleaved still make one batch per structure."""
    from smg_sdk.training.trainer import _structure_groups

    trainer = make_trainer(tiny_path, tmp_path)
    one = TrainingSample([Subject(make_image(1), "dog")], "<1> on grass", make_image(2))
    two = TrainingSample([Subject(make_image(3), "dog"), Subject(make_image(4), "cat")], "<1> and <2>", make_image(5))
    conditions = [trainer.pipeline.encode(trainer._request(s)) for s in (one, two, one, two, one)]
    assert _structure_groups(conditions) == [[0, 2, 4], [1, 3]]


def test_cached_encodings_give_the_same_losses(tiny_path, tmp_path):
    plain = make_trainer(tiny_path, tmp_path / "plain", steps=4).train()
    cached_trainer = make_trainer(tiny_path, tmp_path / "cached", steps=4)
    cached_trainer.config.cache_encodings = True
    cached = cached_trainer.train()
    assert len(cached_trainer._encoded) == 3  # the whole dataset, encoded once
    assert cached.losses == pytest.approx(plain.losses, rel=1e-5)


def test_cached_encodings_refuse_sample_changing_hooks(tiny_path, tmp_path):
    class Flip(TrainerHook):
        def on_sample(self, sample, rng):
            return sample

    from smg_sdk.errors import ConfigError

    with pytest.raises(ConfigError, match="cache_encodings"):
        backend = FluxBackend.from_pretrained(tiny_path, max_sequence_length=32)
        backend.add_stream_adapter("subject", rank=4)
        pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(adapter="subject")])
        config = TrainerConfig(output_dir=str(tmp_path), cache_encodings=True, progress=False)
        FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "subject"), dataset(), config, [Flip()])


def test_loss_weights_weigh_tokens(tiny_path, tmp_path):
    """Uniform weights give the plain loss; weight on one half gives that half's loss alone."""
    import dataclasses

    import numpy as np

    trainer = make_trainer(tiny_path, tmp_path / "run")
    sample = dataset()[0]
    rows, cols = trainer.backend.token_grid(trainer.config.height, trainer.config.width)

    def loss(weights):
        weighted = dataclasses.replace(sample, loss_weights=weights) if weights is not None else sample
        return trainer.sample_loss(weighted, torch.Generator().manual_seed(3)).item()

    plain = loss(None)
    assert abs(loss(np.full((4, 4), 7.0)) - plain) < 1e-5 * plain
    top, bottom = np.ones((2, 1)) * [[1], [0]], np.ones((2, 1)) * [[0], [1]]
    top_loss, bottom_loss = loss(top), loss(bottom)
    assert abs((top_loss + bottom_loss) / 2 - plain) < 1e-4 * plain  # halves of equal size average to the whole
    assert abs(top_loss - bottom_loss) > 1e-3 * plain
    with pytest.raises(RequestError, match="loss_weights"):
        dataclasses.replace(sample, loss_weights=np.zeros((2, 2)))
