"""A minimal, generic flow-matching trainer for pipelines on the FLUX backend.

What it trains is a dict of named parameters (an aggregator's weights, a LoRA adapter's
tensors, a learnable token...); everything else is frozen. Each step draws samples, lets
hooks augment them (reference dropout, concept substitution...), encodes them through the
pipeline's own encoders and aggregators, and regresses the FLUX velocity
``noise - x0`` at a sampled noise level.

Determinism is by construction: the sample order, the noise, the noise level and the
hooks' random choices are all seeded from ``(seed, step, index)``, so a run resumed from a
checkpoint continues exactly as an uninterrupted one. The loop itself (steps, checkpoints,
resume, budget, evaluation lines, history) is :class:`~smg_sdk.training.loop.TrainingLoop`.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, SMGError
from ..adapters import lora_layers
from ..attention.passes import build_attention_pass
from ..types import Request
from .data import TrainingSample
from .distributed import broadcast_parameters, shard_indices
from .loop import LoopConfig, TrainingLoop, sample_index, sample_rng, step_seed
from .loop import RESUME_MAY_CHANGE, TrainResult  # noqa: F401 - their home before loop.py

_seed = step_seed  # the name callers (and tests) used before loop.py

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import SubjectPipeline


@dataclass
class TrainerConfig:
    """Hyper-parameters of a run. ``output_dir`` receives ``checkpoint-<step>/`` folders."""

    output_dir: str
    max_steps: int = 100
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 1
    seed: int = 0
    height: int = 64
    width: int = 64
    guidance_scale: float = 1.0
    timestep_sampling: str = "logit_normal"
    checkpoint_every: int = 50
    max_grad_norm: float | None = 1.0
    progress: bool = True
    cache_encodings: bool = False
    """Encode each dataset sample (conditions and target latents) once and reuse it in later epochs:
    for frozen encoders and no sample-changing hooks (checked), on a dataset of fixed samples."""
    data: dict[str, Any] = field(default_factory=dict)
    """What the dataset is, as far as a resumed run must match it (JSON values; e.g. a recipe's
    ``{"caption_dropout": 0.2}``). The trainer only stores it in each checkpoint and compares it
    on resume; empty (the default) stores nothing, so runs from before it existed resume."""

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ConfigError(f"output_dir must be a folder path, got {self.output_dir!r}.")
        for name in ("max_steps", "batch_size", "checkpoint_every"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("seed", self.seed, low=0, high=2**63 - 1)
        for name in ("height", "width"):
            value = _check_int(name, getattr(self, name), low=16)
            if value % 16:
                raise ConfigError(f"{name}={value} is not a multiple of 16; use {value - value % 16 or 16}.")
        _check_number("learning_rate", self.learning_rate, positive=True)
        _check_number("weight_decay", self.weight_decay)
        _check_number("guidance_scale", self.guidance_scale)
        if self.max_grad_norm is not None:
            _check_number("max_grad_norm", self.max_grad_norm, positive=True)
        if self.timestep_sampling not in ("logit_normal", "uniform"):
            raise ConfigError(f"timestep_sampling must be 'logit_normal' or 'uniform', not {self.timestep_sampling!r}.")
        for name in ("progress", "cache_encodings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if not isinstance(self.data, dict) or not all(isinstance(k, str) for k in self.data):
            raise ConfigError(f"data must be a dict of setting names to JSON values, got {self.data!r}.")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}.")
    return value


def _check_number(name: str, value: Any, positive: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}.")
    return float(value)


class TrainerHook:
    """Extension points of a training run; override what you need."""

    def on_sample(self, sample: TrainingSample, rng: random.Random) -> TrainingSample:
        """Return the sample to train on (augmented); ``rng`` is seeded per (step, index)."""
        return sample

    def on_step_end(self, step: int, loss: float) -> None:
        """Called after each optimiser step with the step's mean loss."""


def module_parameters(prefix: str, module: nn.Module) -> dict[str, nn.Parameter]:
    """All parameters of ``module`` as trainable, named ``<prefix>.<param name>``."""
    return {f"{prefix}.{name}": p for name, p in module.named_parameters()}


def adapter_parameters(transformer: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """The LoRA A/B matrices of ``adapter`` in ``transformer``, named ``adapter.<name>.<module>...``."""
    params = {}
    for module_name, layer in lora_layers(transformer, adapter):
        params[f"adapter.{adapter}.{module_name}.lora_A.weight"] = layer.lora_A[adapter].weight
        params[f"adapter.{adapter}.{module_name}.lora_B.weight"] = layer.lora_B[adapter].weight
    if not params:
        raise SMGError(f"No LoRA adapter named {adapter!r} in the transformer; add it before training.")
    return params


def _token_weights(grid: np.ndarray, token_grid: tuple[int, int]) -> torch.Tensor:
    """A sample's ``loss_weights`` grid averaged onto the ``(rows, cols)`` token grid, flattened row-major ``(1, L)``."""
    tensor = torch.as_tensor(grid, dtype=torch.float32)[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(tensor, token_grid).reshape(1, -1)


def _stack_weights(weights: list[torch.Tensor | None], x0: torch.Tensor) -> torch.Tensor | None:
    """Rows' token weights ``(B, L)`` (uniform for a row without any), or None when no row has weights."""
    if all(w is None for w in weights):
        return None
    return torch.cat([torch.ones(1, x0.shape[1]) if w is None else w for w in weights])


def _structure_groups(conditions: Sequence[Any]) -> list[list[int]]:
    """Indices of ``conditions`` grouped by stackable structure (any order; see ``candidates.can_stack``)."""
    from ..candidates import can_stack

    groups: list[list[int]] = []
    for i, c in enumerate(conditions):
        group = next((g for g in groups if can_stack(conditions[g[0]], c)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups


class FlowMatchingTrainer:
    """Train ``trainable`` parameters of ``pipeline`` on ``dataset`` (a sequence of samples)."""

    def __init__(
        self,
        pipeline: "SubjectPipeline",
        trainable: dict[str, nn.Parameter],
        dataset: Sequence[TrainingSample] | Iterable[TrainingSample],
        config: TrainerConfig,
        hooks: Sequence[TrainerHook] = (),
    ):
        from accelerate import Accelerator

        if not trainable:
            raise SMGError("Nothing to train: pass a non-empty dict of named parameters.")
        self.pipeline = pipeline
        self.backend = pipeline.backend
        self.dataset = dataset if isinstance(dataset, Sequence) else list(dataset)
        if len(self.dataset) == 0:
            raise SMGError("The training dataset is empty.")
        self.config = config
        self.hooks = list(hooks)
        self.trainable = dict(trainable)
        self.accelerator = Accelerator(cpu=self.backend.device.type == "cpu")
        shard_indices(config.batch_size, self.accelerator.process_index, self.accelerator.num_processes)  # checks
        broadcast_parameters(self.trainable.values(), self.accelerator.num_processes)
        self._freeze_all_but_trainable()
        optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.optimizer = self.accelerator.prepare(optimizer)
        self._encoded: dict[int, tuple] = {}
        if config.cache_encodings:
            self._check_cacheable()

    def _check_cacheable(self) -> None:
        """Refuse ``cache_encodings`` when an encoding could change between epochs."""
        changing = [type(h).__name__ for h in self.hooks if type(h).on_sample is not TrainerHook.on_sample]
        if changing:
            raise ConfigError(f"cache_encodings=True cannot be used with hook {changing[0]} (it changes samples "
                              "per step); set cache_encodings=False.")
        encoding = list(self.backend.encoding_modules())
        encoding += [c for c in self.pipeline.encoders + self.pipeline.aggregators if isinstance(c, nn.Module)]
        frozen = {id(p) for m in encoding for p in m.parameters()}
        if any(id(p) in frozen for p in self.trainable.values()):
            raise ConfigError("cache_encodings=True needs frozen encoders and aggregators, but a trainable "
                              "parameter belongs to one; set cache_encodings=False.")

    def _freeze_all_but_trainable(self) -> None:
        modules = list(self.backend.modules().values())
        modules += [c for c in self.pipeline.encoders + self.pipeline.aggregators if isinstance(c, nn.Module)]
        for module in modules:
            module.requires_grad_(False)
        for p in self.trainable.values():
            p.requires_grad_(True)

    # ------------------------------------------------------------------ samples and loss
    def dataset_index(self, step: int, index: int) -> int:
        """The dataset row used at ``(step, index)``: an epoch-wise permutation, seeded."""
        return sample_index(self.config.seed, step, index, self.config.batch_size, len(self.dataset))

    def sample_at(self, step: int, index: int) -> TrainingSample:
        """The sample used at ``(step, index)``, after the hooks."""
        sample = self.dataset[self.dataset_index(step, index)]
        rng = sample_rng(self.config.seed, step, index)
        for hook in self.hooks:
            sample = hook.on_sample(sample, rng)
        return sample

    def _request(self, sample: TrainingSample) -> Request:
        cfg = self.config
        request = Request(prompt=sample.prompt or "-", subjects=list(sample.subjects), height=cfg.height,
                          width=cfg.width, num_inference_steps=1, size_multiple=self.backend.size_multiple)
        # caption dropout: the empty prompt, as true CFG's negative branch encodes it (Request.negative)
        return request if sample.prompt else request.negative()

    def _noise(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise like ``x0`` (L, C) and a level ``sigma`` (1,), drawn from ``generator`` in that order."""
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        if self.config.timestep_sampling == "logit_normal":
            sigma = torch.sigmoid(torch.randn(1, generator=generator))
        else:
            sigma = torch.rand(1, generator=generator)
        return noise, sigma.to(x0.device, x0.dtype)

    def _rows_loss(self, request: Request, conditions, x0: torch.Tensor, noise: torch.Tensor,
                   sigmas: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row flow-matching MSE ``(B,)`` of packed targets ``x0`` (B, L, C) at levels ``sigmas`` (B,).

        ``request`` is what the pipeline's attention rules see (rows share one only without rules).
        ``weights`` ``(B, L)`` weigh each token's squared error (a weighted mean); None = plain mean."""
        cfg = self.config
        noisy = (1 - sigmas[:, None, None]) * x0 + sigmas[:, None, None] * noise
        attention = build_attention_pass(conditions, noisy.shape[1], self.pipeline.rules, request)
        pred = self.backend.velocity(attention, noisy, sigmas, height=cfg.height, width=cfg.width,
                                     guidance_scale=cfg.guidance_scale)
        errors = (pred.float() - (noise - x0).float()) ** 2
        if weights is None:
            return errors.mean(dim=(1, 2))
        weights = weights.to(errors)
        return (errors.mean(dim=2) * weights).sum(dim=1) / weights.sum(dim=1)

    def sample_loss(self, sample: TrainingSample, generator: torch.Generator) -> torch.Tensor:
        """Flow-matching loss of one sample with noise and level drawn from ``generator``."""
        request, conditions, x0, weights = self._encode_sample(sample)
        noise, sigma = self._noise(x0, generator)
        return self._rows_loss(request, conditions, x0, noise, sigma, weights)[0]

    def batch_loss(self, step: int) -> torch.Tensor:
        """Mean loss of the step's samples; samples whose conditions stack run as one transformer batch.

        Each sample keeps its own noise and level (seeded by ``(seed, step, index)``), so the value
        equals the mean of :meth:`sample_loss` up to float rounding. Pipelines with attention rules
        run sample by sample (a rule sees one request). Under ``accelerate launch`` with N
        processes this process computes only its shard of the batch (its rows' sum over the
        global ``batch_size``; see :mod:`smg_sdk.training.distributed`).
        """
        from ..candidates import stack

        cfg = self.config
        indices = shard_indices(cfg.batch_size, self.accelerator.process_index, self.accelerator.num_processes)
        encoded = [self._encoding(step, i) for i in indices]
        requests, conditions, targets, weights = (list(column) for column in zip(*encoded))
        drawn = [self._noise(t, torch.Generator().manual_seed(_seed(cfg.seed, step, i, 2)))
                 for i, t in zip(indices, targets)]
        groups = [[i] for i in range(len(encoded))] if self.pipeline.rules else _structure_groups(conditions)
        total = torch.zeros((), device=self.backend.device)
        for group in groups:
            x0 = torch.cat([targets[i] for i in group])
            noise = torch.cat([drawn[i][0] for i in group])
            sigmas = torch.cat([drawn[i][1] for i in group])
            rows = self._rows_loss(requests[group[0]], stack([conditions[i] for i in group]), x0, noise, sigmas,
                                   _stack_weights([weights[i] for i in group], x0))
            total = total + rows.sum()
        return total / cfg.batch_size

    def _encoding(self, step: int, index: int) -> tuple[Request, Any, torch.Tensor, torch.Tensor | None]:
        """(request, conditions, packed target latents (1, L, C), token weights (1, L) or None) at ``(step, index)``."""
        row = self.dataset_index(step, index)
        if row in self._encoded:
            return self._encoded[row]
        encoded = self._encode_sample(self.sample_at(step, index))
        if self.config.cache_encodings:
            self._encoded[row] = encoded
        return encoded

    def _encode_sample(self, sample: TrainingSample) -> tuple[Request, Any, torch.Tensor, torch.Tensor | None]:
        """The sample's request, its conditions, its packed target latents (1, L, C) and token weights (1, L)."""
        request = self._request(sample)
        x0 = self.backend.encode_images([sample.target], self.config.height, self.config.width)[0].tokens
        weights = None
        if sample.loss_weights is not None:
            weights = _token_weights(sample.loss_weights, self.backend.token_grid(self.config.height, self.config.width))
        return request, self.pipeline.encode(request), x0, weights

    @torch.no_grad()
    def evaluate(self, samples: Sequence[TrainingSample], seed: int = 1234) -> float:
        """Mean loss on fixed samples with fixed noise (for before/after comparisons)."""
        losses = [self.sample_loss(s, torch.Generator().manual_seed(seed + i)).item() for i, s in enumerate(samples)]
        return float(np.mean(losses))

    # ------------------------------------------------------------------ loop
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.trainable.items()}

    def loop(self, evaluate: Callable[[int], dict] | None = None, eval_every: int | None = None,
             log: Callable[[str], None] | None = None, history_file: str | None = None) -> TrainingLoop:
        """The :class:`TrainingLoop` of this run: :meth:`batch_loss` of the trainable tensors."""
        cfg = self.config
        run_config = asdict(cfg)
        if not run_config["data"]:  # nothing recorded, as before it was a setting: old checkpoints resume
            run_config.pop("data")
        settings = LoopConfig(cfg.output_dir, cfg.max_steps, cfg.checkpoint_every, run_config, RESUME_MAY_CHANGE,
                              cfg.max_grad_norm, cfg.progress, eval_every=eval_every, history_file=history_file)
        return TrainingLoop(self.trainable, self.optimizer, self.batch_loss, settings, accelerator=self.accelerator,
                            lock=self.pipeline.lock, on_step_end=[h.on_step_end for h in self.hooks],
                            evaluate=evaluate, log=log)

    def train(self, resume: bool = True, budget_minutes: float | None = None, *,
              evaluate: Callable[[int], dict] | None = None, eval_every: int | None = None,
              log: Callable[[str], None] | None = None, history_file: str | None = None) -> TrainResult:
        """Run until ``max_steps``; with ``resume``, continue from the newest complete checkpoint.

        ``budget_minutes`` stops the run early, after writing a checkpoint, once that much wall
        time has passed; running again with ``resume`` continues it exactly.

        A damaged newest checkpoint is skipped (with a warning) for the one before it; a
        checkpoint from a run with other settings is refused (see :data:`RESUME_MAY_CHANGE`).
        ``output_dir`` must be new, empty or an earlier training output. Under ``accelerate launch``
        only the main process writes checkpoints, and every process waits for each one.
        ``evaluate(step) -> dict`` adds an evaluation line every ``eval_every`` steps and at the
        end (written to ``log``); ``history_file`` collects this run's losses and lines (JSON).
        """
        return self.loop(evaluate, eval_every, log, history_file).run(resume, budget_minutes)
