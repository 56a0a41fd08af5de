"""The one training loop every recipe runs: a recipe brings a loss function and its parameters.

What is the same for every recipe lives here, once:

- **seeding** by ``(seed, step, index)`` (:func:`step_seed`, :func:`sample_index`,
  :func:`sample_rng`): which sample, which augmentation, which noise, never a global RNG, so
  a resumed run draws exactly what an uninterrupted one would have;
- **the step**: ``loss(step)``, backward, gradients summed over processes (``accelerate
  launch``; see :mod:`.distributed`), clipping, the optimiser step, under an optional lock;
- **progress bar**, **time budget** (stop after a checkpoint once ``budget_minutes`` passed),
  **atomic checkpoints** every ``checkpoint_every`` steps, at the end and at a budget stop
  (:mod:`.checkpoint`), **exact resume** from the newest complete checkpoint whose run
  settings match;
- **evaluation lines** (``evaluate(step) -> dict`` every ``eval_every`` steps and at the end,
  logged as one line with the mean of the last 50 losses) and **history.json** (this run's
  losses and evaluation lines appended, so curves survive resumes).

:class:`~smg_sdk.training.FlowMatchingTrainer` and MUSIC's planner training both run it.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import check_output_folder
from ..errors import SMGError
from .checkpoint import PATTERN, resume_checkpoint, save_checkpoint
from .distributed import main_decides, sum_gradients, sum_value

RESUME_MAY_CHANGE = ("output_dir", "max_steps", "checkpoint_every", "progress", "cache_encodings")
"""Settings a resumed run may change; any other difference from the checkpoint's run is refused."""

RECENT = 50
"""Evaluation lines report the mean loss of this many most recent steps."""


def step_seed(*parts: int) -> int:
    """A 32-bit seed derived from integers such as ``(seed, step, index, tag)`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def sample_index(seed: int, step: int, index: int, batch_size: int, size: int) -> int:
    """The dataset row of batch position ``index`` at ``step``: epochs walk a permutation reshuffled per epoch."""
    flat = step * batch_size + index
    return int(np.random.default_rng(step_seed(seed, flat // size)).permutation(size)[flat % size])


def sample_rng(seed: int, step: int, index: int) -> random.Random:
    """The random source of the augmentations of batch position ``index`` at ``step``."""
    return random.Random(step_seed(seed, step, index, 1))


def is_training_output(folder: Path) -> bool:
    """Whether ``folder`` holds ``checkpoint-<step>`` folders (an earlier training output)."""
    return any(PATTERN.match(p.name) for p in folder.iterdir())


@dataclass
class TrainResult:
    """This run's per-step losses, the last step reached, the newest checkpoint and the evaluation lines."""

    losses: list[float] = field(default_factory=list)
    last_step: int = 0
    checkpoint: Path | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoopConfig:
    """How the loop runs. ``run_config`` is stored in every checkpoint and must match on resume
    (keys in ``may_change`` excepted); ``output_kind`` names the folder in errors."""

    output_dir: str
    max_steps: int
    checkpoint_every: int
    run_config: dict[str, Any]
    may_change: tuple[str, ...] = RESUME_MAY_CHANGE
    max_grad_norm: float | None = 1.0
    progress: bool = True
    description: str = "training"
    output_kind: str = "training"
    eval_every: int | None = None
    history_file: str | None = None


class _OneProcess:
    """What the loop needs of an ``accelerate.Accelerator``, for a plain single-process run."""

    num_processes = 1
    is_main_process = True

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def wait_for_everyone(self) -> None:
        pass


class TrainingLoop:
    """Train ``parameters`` (name -> tensor) with ``optimizer`` on ``loss(step) -> scalar tensor``.

    ``accelerator``: an ``accelerate.Accelerator`` (backward, clipping, process index; only the
    main process writes), or None for one plain process. ``lock``: held around each step.
    ``on_step_end(step, loss)`` callbacks run after each step; ``evaluate(step) -> dict`` makes
    the evaluation lines (main process only), written to ``log``. ``recognise(folder)`` tells an
    earlier output of this recipe, which may be resumed into (any other non-empty folder is refused).
    """

    def __init__(
        self,
        parameters: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        loss: Callable[[int], torch.Tensor],
        config: LoopConfig,
        *,
        accelerator: Any = None,
        lock: ContextManager[Any] | None = None,
        on_step_end: Sequence[Callable[[int, float], None]] = (),
        evaluate: Callable[[int], dict[str, Any]] | None = None,
        log: Callable[[str], None] | None = None,
        recognise: Callable[[Path], bool] = is_training_output,
    ):
        if not parameters:
            raise SMGError("Nothing to train: pass a non-empty dict of named parameters.")
        self.parameters, self.optimizer, self.loss, self.config = dict(parameters), optimizer, loss, config
        self.accelerator = accelerator if accelerator is not None else _OneProcess()
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.on_step_end, self.evaluate, self.log, self.recognise = list(on_step_end), evaluate, log, recognise

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> float:
        """One optimiser step on ``loss(step)`` (holding the lock); returns the loss over all processes."""
        processes, params = self.accelerator.num_processes, list(self.parameters.values())
        with self.lock:
            loss = self.loss(step)
            self.accelerator.backward(loss)
            sum_gradients(params, processes)
            if self.config.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return sum_value(float(loss.detach()), processes)

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors by name (what a checkpoint stores)."""
        return {name: p.detach() for name, p in self.parameters.items()}

    def restore(self, folder: Path, tensors: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                state: dict[str, Any]) -> int:
        """Load a checkpoint's tensors and optimizer state; returns its step. Raises SMGError if it does not fit."""
        missing = sorted(set(self.parameters) - set(tensors))
        if missing:
            raise SMGError(f"Checkpoint {folder} lacks trainable tensor {missing[0]!r}; was it made by another recipe?")
        with torch.no_grad():
            for name, p in self.parameters.items():
                if tensors[name].shape != p.shape:
                    raise SMGError(f"Checkpoint tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                   f"the model has {tuple(p.shape)}.")
                p.copy_(tensors[name])
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise SMGError(f"Checkpoint {folder}: the optimizer state does not fit this run ({exc}).") from exc
        return int(state["step"])

    def _checkpoint(self, root: Path, step: int, result: TrainResult) -> None:
        if self.accelerator.is_main_process:
            result.checkpoint = save_checkpoint(root, step, self.state_tensors(), self.optimizer.state_dict(),
                                                {"config": self.config.run_config})
        self.accelerator.wait_for_everyone()  # no process reads or resumes a half-written checkpoint

    # ------------------------------------------------------------------ evaluation and history
    def _evaluation_line(self, step: int, result: TrainResult) -> None:
        if self.evaluate is None or not self.accelerator.is_main_process:
            return
        line = {"step": step, "loss": float(np.mean(result.losses[-RECENT:])), **self.evaluate(step)}
        result.evaluations.append(line)
        if self.log is not None:
            self.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()))

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = True, budget_minutes: float | None = None) -> TrainResult:
        """Run to ``max_steps`` (with ``resume``, from the newest complete checkpoint) or the budget.

        ``budget_minutes`` stops the run once that much wall time has passed, after writing a
        checkpoint; running again with ``resume`` continues it exactly. A damaged newest
        checkpoint is skipped (with a warning) for the one before it; one from a run with other
        settings is refused (:class:`~smg_sdk.errors.ConfigError` listing the differences).
        ``output_dir`` must be new, empty or an earlier output of this recipe.
        """
        cfg = self.config
        root = check_output_folder(cfg.output_dir, cfg.output_kind, self.recognise)
        result = TrainResult()
        found = resume_checkpoint(root, cfg.run_config, cfg.may_change) if resume else None
        if found is not None:
            result.last_step, result.checkpoint = self.restore(*found), found[0]
        began = time.monotonic()
        bar = tqdm(range(result.last_step, cfg.max_steps), desc=cfg.description, initial=result.last_step,
                   total=cfg.max_steps, disable=not cfg.progress or not self.accelerator.is_main_process)
        for step in bar:
            value = self.step(step)
            result.losses.append(value)
            bar.set_postfix(loss=f"{value:.4f}")
            for callback in self.on_step_end:
                callback(step, value)
            done = result.last_step = step + 1
            spent = budget_minutes is not None and time.monotonic() - began > 60 * budget_minutes
            out_of_time = main_decides(spent, self.accelerator.num_processes)
            last = done == cfg.max_steps or out_of_time
            if done % cfg.checkpoint_every == 0 or last:
                self._checkpoint(root, done, result)
            if (cfg.eval_every is not None and done % cfg.eval_every == 0) or last:
                self._evaluation_line(done, result)
            if out_of_time:
                if self.log is not None:
                    self.log(f"{cfg.description}: budget of {budget_minutes} minutes reached at step {done}; "
                             "run again with resume to continue")
                break
        bar.close()
        if cfg.history_file is not None and self.accelerator.is_main_process:
            append_history(Path(cfg.history_file), result.losses, result.evaluations)
        return result


def append_history(file: Path, losses: Sequence[float], evaluations: Sequence[dict[str, Any]]) -> None:
    """Append a run's losses and evaluation lines to ``file`` (``{"losses": [...], "evaluations": [...]}``), atomically."""
    history = json.loads(file.read_text()) if file.is_file() else {"losses": [], "evaluations": []}
    history["losses"] += list(losses)
    history["evaluations"] += list(evaluations)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(history))
    tmp.replace(file)


__all__ = ["LoopConfig", "RESUME_MAY_CHANGE", "TrainResult", "TrainingLoop", "append_history", "is_training_output",
           "sample_index", "sample_rng", "step_seed"]
