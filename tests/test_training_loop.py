"""Issue 14: the one training loop (steps, seeding, budget, checkpoints, exact resume, eval lines, history)."""

from __future__ import annotations

import json

import pytest
import torch

from smg_sdk.errors import ConfigError, SMGError
from smg_sdk.training import LoopConfig, TrainingLoop
from smg_sdk.training.checkpoint import checkpoints
from smg_sdk.training.loop import sample_index, sample_rng, step_seed

DATA = torch.linspace(-1, 1, 12)[:, None]
TARGET = 3 * DATA - 0.5


class Regression:
    """A real (tiny) recipe: fit ``y = 3x - 0.5`` from noisy samples drawn by ``(seed, step, index)``."""

    def __init__(self, output_dir, seed: int = 0, lr: float = 0.1, **loop):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(1, 1)
        self.seed, self.lr = seed, lr
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        settings = dict(max_steps=6, checkpoint_every=2, progress=False) | loop
        self.config = LoopConfig(str(output_dir), run_config={"seed": seed, "lr": lr}, **settings)

    def loss(self, step: int) -> torch.Tensor:
        rows = [sample_index(self.seed, step, i, 4, len(DATA)) for i in range(4)]
        noise = torch.randn(4, 1, generator=torch.Generator().manual_seed(step_seed(self.seed, step, 2)))
        return ((self.model(DATA[rows]) - TARGET[rows] - 0.01 * noise) ** 2).mean()

    def loop(self, **options) -> TrainingLoop:
        return TrainingLoop(dict(self.model.named_parameters()), self.optimizer, self.loss, self.config, **options)


def test_trains_and_checkpoints(tmp_path):
    recipe = Regression(tmp_path / "run")
    seen: list[tuple[int, float]] = []
    result = recipe.loop(on_step_end=[lambda step, loss: seen.append((step, loss))]).run()
    assert result.last_step == 6 and len(result.losses) == 6 and result.losses[-1] < result.losses[0]
    assert [s for s, _ in seen] == list(range(6)) and [v for _, v in seen] == result.losses
    assert [p.name for p in checkpoints(tmp_path / "run")] == ["checkpoint-6", "checkpoint-4", "checkpoint-2"]
    assert result.checkpoint == tmp_path / "run" / "checkpoint-6"


def test_resume_continues_exactly(tmp_path):
    full = Regression(tmp_path / "full")
    whole = full.loop().run()
    part = Regression(tmp_path / "part", max_steps=3, checkpoint_every=3)
    first = part.loop().run()
    resumed = Regression(tmp_path / "part", checkpoint_every=3)  # fresh model and optimizer: all from the checkpoint
    second = resumed.loop().run()
    assert first.last_step == 3 and second.last_step == 6 and len(second.losses) == 3
    assert first.losses + second.losses == whole.losses  # bit-identical
    for name, p in full.model.named_parameters():
        assert torch.equal(p, dict(resumed.model.named_parameters())[name]), name


def test_resume_with_other_settings_is_refused(tmp_path):
    Regression(tmp_path / "run", max_steps=2).loop().run()
    with pytest.raises(ConfigError, match="lr: checkpoint 0.1, now 0.05"):
        Regression(tmp_path / "run", lr=0.05).loop().run()


def test_resume_into_other_parameters_is_refused(tmp_path):
    Regression(tmp_path / "run", max_steps=2).loop().run()
    other = Regression(tmp_path / "run")
    params = dict(other.model.named_parameters())
    extra = TrainingLoop({**params, "scale": torch.nn.Parameter(torch.ones(1))}, other.optimizer, other.loss,
                         other.config)
    with pytest.raises(SMGError, match="lacks trainable tensor 'scale'"):
        extra.run()
    fewer = TrainingLoop({"weight": params["weight"]}, torch.optim.Adam([params["weight"]]), other.loss, other.config)
    with pytest.raises(SMGError, match="optimizer state does not fit"):
        fewer.run()


def test_budget_stops_after_a_checkpoint_and_resume_finishes(tmp_path):
    lines: list[str] = []
    stopped = Regression(tmp_path / "run").loop(log=lines.append).run(budget_minutes=1e-9)
    assert stopped.last_step == 1 and stopped.checkpoint == tmp_path / "run" / "checkpoint-1"
    assert "budget" in lines[-1] and "step 1" in lines[-1]
    finished = Regression(tmp_path / "run").loop().run()
    assert finished.last_step == 6 and len(finished.losses) == 5


def test_evaluation_lines_and_history_survive_a_resume(tmp_path):
    history = tmp_path / "history.json"
    lines: list[str] = []

    def run(max_steps: int):
        recipe = Regression(tmp_path / "run", max_steps=max_steps, eval_every=2, history_file=str(history))
        evaluate = lambda step: {"slope": float(recipe.model.weight.detach())}  # noqa: E731
        return recipe.loop(evaluate=evaluate, log=lines.append).run()

    first, second = run(3), run(6)
    assert [e["step"] for e in first.evaluations] == [2, 3] and [e["step"] for e in second.evaluations] == [4, 6]
    assert second.evaluations[-1]["loss"] == pytest.approx(sum(second.losses) / 3)  # this run's recent steps
    assert len(lines) == 4 and lines[0].startswith("step=2 loss=") and "slope=" in lines[0]
    saved = json.loads(history.read_text())
    assert saved["losses"] == first.losses + second.losses
    assert [e["step"] for e in saved["evaluations"]] == [2, 3, 4, 6]


class Held:
    """A context manager that says whether it is entered."""

    inside = False

    def __enter__(self) -> None:
        self.inside = True

    def __exit__(self, *exc: object) -> None:
        self.inside = False


def test_the_lock_is_held_during_each_step(tmp_path):
    recipe, lock, held = Regression(tmp_path / "run", max_steps=2), Held(), []
    loss = recipe.loss
    recipe.loss = lambda step: (held.append(lock.inside), loss(step))[1]
    recipe.loop(lock=lock).run()
    assert held == [True, True] and not lock.inside


def test_output_folder_of_something_else_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(SMGError, match="Refusing to replace"):
        Regression(tmp_path).loop().run()


def test_seeding_helpers():
    rows = [sample_index(7, step, i, 4, 12) for step in range(3) for i in range(4)]
    assert sorted(rows) == list(range(12))  # one epoch visits every row once
    assert rows != [sample_index(8, step, i, 4, 12) for step in range(3) for i in range(4)]
    assert sample_rng(7, 2, 1).random() == sample_rng(7, 2, 1).random() != sample_rng(7, 2, 2).random()
    assert step_seed(1, 2, 3) == step_seed(1, 2, 3) != step_seed(1, 2, 4)
