"""The planner-training recipe: LoRA on the tiny Qwen2.5-VL lowers the plan-token LM loss."""

from __future__ import annotations

import torch

from smg_plugins.music.autodata import synthesize_dataset
from smg_plugins.music.planner import MusicPlanner
from smg_plugins.music.training import PlannerTrainer, PlannerTrainingConfig, train_planner
from smg_sdk import Subject

from conftest import make_image


def dataset():
    pool = [Subject(make_image(i, 32), w) for i, w in enumerate(["dog", "cat", "ball", "mug"])]
    return synthesize_dataset(pool, count=2, seed=1, min_subjects=2, max_subjects=3, decimation=False, size=32)


def test_planner_training_lowers_lm_loss_and_adapter_reloads(tmp_path):
    data = dataset()
    config = PlannerTrainingConfig(output_dir=str(tmp_path / "run"), max_steps=8, learning_rate=1e-2, batch_size=2,
                                   lora_rank=8, decimation_probability=0.0, image_size=32, progress=False)
    from smg_sdk.mllm import load_mllm
    from smg_sdk.presets.tiny import tiny_qwen_vl_path

    mllm = load_mllm(tiny_qwen_vl_path(), reuse=False)
    trainer = PlannerTrainer(mllm, data, config)
    example = trainer.example(data[0])
    supervised = int((example["labels"] != -100).sum())
    assert 0 < supervised < example["labels"].shape[1]  # loss only on the plan tokens
    before = trainer.evaluate(data)
    result = trainer.train()
    after = trainer.evaluate(data)
    assert after < before * 0.95, (before, after)  # random tiny embeddings bound the logits
    assert len(result.losses) == 8 and (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()

    planner = MusicPlanner(adapter_path=str(tmp_path / "run" / "adapter"), max_new_tokens=8, max_attempts=1)
    assert planner.mllm is not mllm  # a private copy: the shared model is left untouched
    reloaded = PlannerTrainer(planner.mllm, data, config).evaluate(data)
    assert abs(reloaded - after) < 1e-4


def test_decimation_augmentation_and_resume(tmp_path):
    data = dataset()
    config = dict(max_steps=3, learning_rate=1e-3, batch_size=1, lora_rank=4, decimation_probability=1.0,
                  image_size=32, progress=False, checkpoint_every=2)
    full, _ = train_planner(data, PlannerTrainingConfig(output_dir=str(tmp_path / "full"), **config))
    assert sorted(d.num_subjects for d in data) == [2, 3]
    assert all(full.sample_at(step, 0).num_subjects == 2 for step in range(4))  # p=1: always decimated to two
    train_planner(data, PlannerTrainingConfig(output_dir=str(tmp_path / "split"), **{**config, "max_steps": 2}))
    resumed, _ = train_planner(data, PlannerTrainingConfig(output_dir=str(tmp_path / "split"), **config))
    for name, p in full.trainable.items():
        assert torch.allclose(p, resumed.trainable[name], atol=1e-6), name


def test_full_training_writes_a_complete_model_folder_that_the_planner_loads(tmp_path):
    """train="full": every tensor (vision tower too) trains; the result is a whole transformers folder."""
    from smg_plugins.music.world_data import WorldPlannerData
    from smg_sdk import load_mllm, tiny_qwen_vl_path

    data = WorldPlannerData(3, "train", (1, 2))
    config = PlannerTrainingConfig(output_dir=str(tmp_path / "run"), train="full", max_steps=3, learning_rate=1e-3,
                                   batch_size=1, progress=False, checkpoint_every=2, eval_every=2)
    trainer, result = train_planner(data, config, eval_set=[data[0]])
    names = set(dict(trainer.mllm.model.named_parameters()))
    assert set(trainer.trainable) == names and any("visual" in n for n in names)
    folder = tmp_path / "run" / "planner"
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert [e["step"] for e in result.evaluations] == [2, 3] and "eval_loss" in result.evaluations[0]

    planner = MusicPlanner(model_path=str(folder), image_size=64)
    loaded = dict(planner.mllm.model.named_parameters())
    random = dict(load_mllm(tiny_qwen_vl_path()).model.named_parameters())
    for name, p in trainer.trainable.items():
        assert torch.equal(loaded[name], p.detach()), name
    assert any(not torch.equal(random[n], trainer.trainable[n].detach()) for n in names if "visual" in n)

    _, again = train_planner(data, PlannerTrainingConfig(**{**config.__dict__, "max_steps": 4}),
                                   eval_set=[data[0]])
    assert again.last_step == 4 and len(again.losses) == 1  # resumed at 3: one more step


def test_train_mode_is_checked():
    import pytest

    from smg_sdk import SMGError

    with pytest.raises(SMGError, match="train must be one of lora, full"):
        PlannerTrainingConfig(output_dir="x", train="half")
