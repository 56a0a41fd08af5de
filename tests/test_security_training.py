"""Training checkpoints are untrusted files; a resume continues the same run or refuses."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from conftest import make_image
from smg_sdk import Subject
from smg_sdk.backends.flux import FluxBackend
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.errors import ModelLoadError, SMGError
from smg_sdk.pipeline import SubjectPipeline
from smg_sdk.training import FlowMatchingTrainer, TrainerConfig, TrainingSample, adapter_parameters
from smg_sdk.training.checkpoint import load_checkpoint


def dataset():
    return [TrainingSample([Subject(make_image(i, 32), "dog")], "a photo of <1>", make_image(10 + i, 32))
            for i in range(2)]


def make_trainer(tiny_path, out: Path, steps: int = 4, **config):
    backend = FluxBackend.from_pretrained(tiny_path, max_sequence_length=16)
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=2, init_lora_weights="gaussian")
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(adapter="subject")])
    settings = dict(output_dir=str(out), max_steps=steps, learning_rate=5e-3, checkpoint_every=1, height=32,
                    width=32, progress=False)
    settings.update(config)
    return FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "subject"), dataset(),
                               TrainerConfig(**settings))


@pytest.fixture(scope="module")
def full_run(tiny_path, tmp_path_factory):
    """An uninterrupted 3-step run: its losses and final tensors."""
    trainer = make_trainer(tiny_path, tmp_path_factory.mktemp("full") / "run", steps=3)
    result = trainer.train()
    return result.losses, {k: v.clone() for k, v in trainer.state_tensors().items()}


def damage_flip(folder: Path) -> str:
    file = folder / "trainable.safetensors"
    data = bytearray(file.read_bytes())
    data[-8] ^= 0xFF
    file.write_bytes(bytes(data))
    return "trainable.safetensors"


def damage_truncate(folder: Path) -> str:
    name = next(p.name for p in folder.iterdir() if p.name.startswith("optimizer"))
    (folder / name).write_bytes((folder / name).read_bytes()[:40])
    return name


def damage_state(folder: Path) -> str:
    (folder / "state.json").write_text('{"step": ')
    return "state.json"


def damage_delete(folder: Path) -> str:
    (folder / "trainable.safetensors").unlink()
    return "trainable.safetensors"


@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_state, damage_delete])
def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(tiny_path, tmp_path, full_run, damage):
    losses, tensors = full_run
    make_trainer(tiny_path, tmp_path / "run", steps=2).train()
    name = damage(tmp_path / "run" / "checkpoint-2")
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        load_checkpoint(tmp_path / "run" / "checkpoint-2")
    resumed = make_trainer(tiny_path, tmp_path / "run", steps=3)
    with pytest.warns(UserWarning, match="checkpoint-2"):
        result = resumed.train()
    assert result.losses == pytest.approx(losses[1:], abs=0)  # resumed from step 1: bit-identical
    for key, value in tensors.items():
        assert torch.equal(resumed.state_tensors()[key], value), key


def test_no_complete_checkpoint_is_a_model_load_error(tiny_path, tmp_path):
    make_trainer(tiny_path, tmp_path / "run", steps=1).train()
    damage_flip(tmp_path / "run" / "checkpoint-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelLoadError, match="checkpoint-1"):
            make_trainer(tiny_path, tmp_path / "run", steps=2).train()


def test_checkpoints_hold_no_pickle(tiny_path, tmp_path):
    make_trainer(tiny_path, tmp_path / "run", steps=1).train()
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoint-1").iterdir() if not p.name.startswith("."))
    assert names == ["optimizer.safetensors", "state.json", "trainable.safetensors"]


def test_resume_with_other_settings_is_refused_with_the_differences(tiny_path, tmp_path):
    make_trainer(tiny_path, tmp_path / "run", steps=1).train()
    other = make_trainer(tiny_path, tmp_path / "run", steps=2, learning_rate=1e-2, seed=7)
    with pytest.raises(SMGError) as info:
        other.train()
    assert "learning_rate" in str(info.value) and "seed" in str(info.value)
    make_trainer(tiny_path, tmp_path / "run", steps=2, checkpoint_every=5).train()  # allowed to differ


@pytest.mark.parametrize("field,value", [
    ("learning_rate", math.nan), ("learning_rate", -1e-4), ("learning_rate", 0), ("learning_rate", "1e-4"),
    ("weight_decay", -0.1), ("weight_decay", math.inf), ("height", 50), ("width", 8), ("height", 64.0),
    ("seed", "0"), ("seed", -1), ("seed", True), ("max_steps", True), ("max_steps", 0), ("batch_size", 1.5),
    ("checkpoint_every", -2), ("guidance_scale", math.nan), ("max_grad_norm", 0), ("max_grad_norm", -1.0),
    ("timestep_sampling", "cosine"), ("progress", "yes"), ("output_dir", ""), ("output_dir", None),
])
def test_trainer_config_validates_like_request(tmp_path, field, value):
    with pytest.raises(SMGError, match=field):
        TrainerConfig(**{"output_dir": str(tmp_path), field: value})


def test_trainer_config_accepts_a_path(tmp_path):
    assert TrainerConfig(output_dir=tmp_path).output_dir == str(tmp_path)
    assert json.dumps(TrainerConfig(output_dir=str(tmp_path)).__dict__)


def test_the_data_setting_is_part_of_the_run(tiny_path, tmp_path):
    """``TrainerConfig.data`` says what the samples are: another value is refused on resume; a checkpoint
    written before runs recorded it resumes with a warning; an empty one is not stored at all."""
    make_trainer(tiny_path, tmp_path / "old", steps=1).train()
    state = json.loads((tmp_path / "old" / "checkpoint-1" / "state.json").read_text())
    assert "data" not in state["config"]
    with pytest.warns(UserWarning, match="before runs recorded data"):
        result = make_trainer(tiny_path, tmp_path / "old", steps=2, data={"caption_dropout": 0.2}).train()
    assert result.last_step == 2
    make_trainer(tiny_path, tmp_path / "new", steps=1, data={"caption_dropout": 0.2}).train()
    with pytest.raises(SMGError, match=r"data: checkpoint \{'caption_dropout': 0.2\}, now \{'caption_dropout': 0.0\}"):
        make_trainer(tiny_path, tmp_path / "new", steps=2, data={"caption_dropout": 0.0}).train()
    with pytest.raises(SMGError, match="data must be a dict"):
        TrainerConfig(str(tmp_path / "x"), data=[("caption_dropout", 0.2)])
