"""Stage 0 of the tiny preset: text-to-image pretraining of FLUX's transformer (and T5).

This is the stand-in for FLUX.1-dev's own pretraining, at SubjectWorld scale: captions-only
scenes whose subjects follow their class priors (``SubjectWorld(kind="caption")``), so the
trained model has a text prior ("a star" is a plain yellow star) that references must later
overcome. It trains the diffusers ``FluxTransformer2DModel`` from its current weights (random,
from ``scripts/build_tiny_preset.py``) and, optionally, the T5 encoder; the VAE and CLIP stay
frozen.

The objective is rectified flow as in FLUX: ``x_t = (1 - sigma) x0 + sigma noise`` with
``sigma`` drawn from a logit-normal, and the transformer regresses ``noise - x0``. Inputs are
exactly what :class:`~smg_sdk.backends.flux.FluxBackend` feeds at inference (T5 tokens padded to
``max_sequence_length``, CLIP pooled vector, packed latents, 3-axis position ids, the guidance
embedding), so nothing changes between training and sampling.

Target latents are encoded once into a pool (:func:`encode_pool`); each step draws a batch from
a permutation seeded by ``(seed, epoch)`` and noise seeded by ``(seed, step)``, so a resumed run
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ...errors import ConfigError
from .latents import pack_latents
from .positions import grid_ids, text_ids

if TYPE_CHECKING:  # pragma: no cover
    from .backend import FluxBackend


@dataclass
class PretrainConfig:
    """Hyper-parameters of stage 0. ``budget_minutes`` stops the run early (a checkpoint is written)."""

    output_dir: str
    max_steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 5e-4
    text_learning_rate: float = 2e-4
    train_text_encoder: bool = True
    warmup_steps: int = 100
    lr_schedule: str = "constant"
    """``"constant"`` after warm-up, or ``"cosine"``: from the learning rate down to 0 at ``max_steps``."""
    seed: int = 0
    side: int = 128
    pool_size: int = 8192
    prior: float = 0.9
    subjects: tuple[int, ...] = (1, 2, 3, 4)
    guidance_range: tuple[float, float] = (1.0, 5.0)
    checkpoint_every: int = 250
    budget_minutes: float | None = None
    max_grad_norm: float = 1.0
    subject_weight: float = 0.0
    """The loss weighs the tokens of the subjects' layout cells ``1 + subject_weight`` (0: a plain mean)."""
    describe: float = 0.0
    """Probability that a caption subject is a uniform training identity named in full
    (``SubjectWorld(describe=...)``); 0: class words only, as before it was an option."""
    caption_dropout: float = 0.0
    """Probability that a training caption is replaced by ``""`` (T5 and CLIP pooled of the empty
    prompt), so the base also learns the unconditional prediction that true classifier-free
    guidance (``true_cfg_scale`` with ``negative_prompt=""``) subtracts (Ho & Salimans 2022, sec. 3.2)."""
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "pool_size", "checkpoint_every", "side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PretrainConfig.{name} must be a whole number >= 1, got {value!r}.")
        if self.side % 16:
            raise ConfigError(f"PretrainConfig.side must be a multiple of 16, got {self.side}.")
        for name in ("learning_rate", "text_learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ConfigError(f"PretrainConfig.{name} must be a finite number > 0, got {value!r}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"PretrainConfig.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}.")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ConfigError(f"PretrainConfig.budget_minutes must be > 0 or None, got {self.budget_minutes!r}.")
        if isinstance(self.describe, bool) or not isinstance(self.describe, (int, float)) or not 0 <= self.describe <= 1:
            raise ConfigError(f"PretrainConfig.describe must be a probability in [0, 1], got {self.describe!r}.")
        if isinstance(self.caption_dropout, bool) or not isinstance(self.caption_dropout, (int, float)) or not (
                0 <= self.caption_dropout < 1):
            raise ConfigError(f"PretrainConfig.caption_dropout must be a probability in [0, 1), got {self.caption_dropout!r}.")
        if not isinstance(self.subject_weight, (int, float)) or not 0 <= self.subject_weight <= 100:
            raise ConfigError(f"PretrainConfig.subject_weight must be in [0, 100], got {self.subject_weight!r}.")
        self.guidance_range = tuple(float(g) for g in self.guidance_range)
        self.subjects = tuple(int(k) for k in self.subjects)
        if not self.subjects or any(not 1 <= k <= 6 for k in self.subjects):
            raise ConfigError(f"PretrainConfig.subjects must be subject counts in 1..6, got {self.subjects!r}.")

    def run_config(self) -> dict:
        """The settings a resumed run must share with the checkpoint (not output place, budget, display)."""
        data = asdict(self)
        for name in ("output_dir", "budget_minutes", "progress", "max_steps", "checkpoint_every"):
            data.pop(name)
        data["guidance_range"] = list(data["guidance_range"])
        data["subjects"] = list(data["subjects"])
        if data["lr_schedule"] == "constant":  # the only schedule before it was an option: old checkpoints resume
            data.pop("lr_schedule")
        else:
            data["max_steps"] = self.max_steps  # the cosine's length is part of the run
        if not data["subject_weight"]:  # a plain mean, as before it was an option: old checkpoints resume
            data.pop("subject_weight")
        if not data["describe"]:  # class words only, as before it was an option: old checkpoints resume
            data.pop("describe")
        if not data["caption_dropout"]:  # every caption kept, as before it was an option: old checkpoints resume
            data.pop("caption_dropout")
        if data["subjects"] == [1, 2, 3, 4]:  # the default before it was an option: old checkpoints resume
            data.pop("subjects")
        return data


@dataclass
class LatentPool:
    """Encoded training targets: packed latents ``(N, L, 4C)``, captions, CLIP pooled ``(N, P)``.

    ``subject_cells``: ``(N, L)`` bool, the tokens whose layout cell holds a subject (one token per
    cell at 128 px), or None for a pool encoded without them.
    """

    latents: torch.Tensor
    captions: list[str]
    pooled: torch.Tensor
    subject_cells: torch.Tensor | None = None


@torch.no_grad()
def encode_pool(backend: "FluxBackend", config: PretrainConfig, batch: int = 64) -> LatentPool:
    """Encode ``config.pool_size`` caption samples (train identities, class priors, a ``describe``
    share named in full) once."""
    from ...data.subjectworld import SubjectWorld
    from ...training.vae import normalised_latents

    world = SubjectWorld("train", "caption", config.seed, subjects=config.subjects, side=config.side,
                         prior=config.prior, describe=config.describe)
    latents, captions, cells = [], [], []
    bar = tqdm(total=config.pool_size, desc="encoding targets", disable=not config.progress)
    for start in range(0, config.pool_size, batch):
        samples = [world[i] for i in range(start, min(start + batch, config.pool_size))]
        encoded = normalised_latents(backend.vae, [s.target_pixels for s in samples], batch)
        latents.append(pack_latents(encoded).cpu())
        captions += [s.caption for s in samples]
        cells += [_subject_cells(s.layout, latents[-1].shape[1]) for s in samples]
        bar.update(len(samples))
    bar.close()
    pooled = torch.cat([backend.encode_pooled(c).cpu() for c in captions])
    return LatentPool(torch.cat(latents), captions, pooled, torch.stack(cells))


def _subject_cells(layout: np.ndarray, tokens: int) -> torch.Tensor:
    """``(L,)`` bool: the tokens over subject cells of an ``(8, 8)`` layout averaged onto the token grid."""
    side = math.isqrt(tokens)
    grid = torch.as_tensor(layout > 0, dtype=torch.float32)[None, None]
    return (torch.nn.functional.adaptive_avg_pool2d(grid, (side, side)).reshape(-1) > 0)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def batch_indices(config: PretrainConfig, step: int, pool_size: int) -> list[int]:
    """The pool rows of ``step``: consecutive slices of a permutation reshuffled each epoch."""
    out = []
    for i in range(config.batch_size):
        flat = step * config.batch_size + i
        order = np.random.default_rng(_seed(config.seed, flat // pool_size)).permutation(pool_size)
        out.append(int(order[flat % pool_size]))
    return out


def t5_tokens(backend: "FluxBackend", captions: list[str]) -> torch.Tensor:
    """T5 token ids ``(B, max_sequence_length)`` padded as the backend pads at inference."""
    ids = backend.tokenizer_2(captions, padding="max_length", max_length=backend.max_sequence_length,
                              truncation=True, return_tensors="pt").input_ids
    return ids.to(backend.device)


def flow_loss(backend: "FluxBackend", pool: LatentPool, config: PretrainConfig, step: int) -> torch.Tensor:
    """Rectified-flow MSE of the batch of ``step`` (noise, levels and guidance seeded by step)."""
    rows = batch_indices(config, step, len(pool.captions))
    generator = torch.Generator().manual_seed(_seed(config.seed, step, 7))
    x0 = pool.latents[rows].to(backend.device, backend.dtype)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    sigma = torch.sigmoid(torch.randn(len(rows), generator=generator)).to(x0)
    lo, hi = config.guidance_range
    guidance = (lo + (hi - lo) * torch.rand(len(rows), generator=generator)).to(backend.device)
    noisy = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    captions, pooled = _dropped_captions(backend, pool, config, step, rows)
    text = backend.text_encoder_2(t5_tokens(backend, captions))[0].to(backend.dtype)
    side = config.side // backend.size_multiple
    pred = backend.transformer(
        hidden_states=noisy, timestep=sigma, guidance=guidance if backend.transformer.config.guidance_embeds else None,
        pooled_projections=pooled.to(backend.device, backend.dtype), encoder_hidden_states=text,
        txt_ids=text_ids(text.shape[1]).to(x0.device), img_ids=grid_ids(side, side).to(x0.device), return_dict=False,
    )[0]
    error = (pred.float() - (noise - x0).float()).pow(2).mean(dim=-1)  # (B, L)
    if not config.subject_weight:
        return error.mean()
    if pool.subject_cells is None:
        raise ConfigError("PretrainConfig.subject_weight needs a pool with subject_cells; encode it with encode_pool.")
    weights = 1.0 + config.subject_weight * pool.subject_cells[rows].to(error)
    return (error * weights).sum() / weights.sum()


def _dropped_captions(backend: "FluxBackend", pool: LatentPool, config: PretrainConfig, step: int,
                      rows: list[int]) -> tuple[list[str], torch.Tensor]:
    """The captions and CLIP pooled ``(B, P)`` of ``rows``, each replaced by the empty prompt's with
    probability ``caption_dropout`` (drawn from its own seed, so runs without dropout are unchanged)."""
    captions, pooled = [pool.captions[r] for r in rows], pool.pooled[rows]
    if not config.caption_dropout:
        return captions, pooled
    generator = torch.Generator().manual_seed(_seed(config.seed, step, 11))
    dropped = torch.rand(len(rows), generator=generator) < config.caption_dropout
    if not dropped.any():
        return captions, pooled
    with torch.no_grad():
        empty = backend.encode_pooled("").cpu().to(pooled.dtype)
    pooled = torch.where(dropped[:, None], empty, pooled)
    return ["" if d else c for c, d in zip(captions, dropped.tolist())], pooled


def lr_factor(config: PretrainConfig, step: int) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then constant or a cosine to 0."""
    warm = min(1.0, (step + 1) / config.warmup_steps)
    if config.lr_schedule == "constant":
        return warm
    return warm * 0.5 * (1 + math.cos(math.pi * min(step, config.max_steps) / config.max_steps))


@dataclass
class PretrainResult:
    """Per-step losses of this run, the last step and checkpoint, and the evaluation lines."""

    losses: list[float] = field(default_factory=list)
    last_step: int = 0
    checkpoint: Path | None = None
    evaluations: list[dict] = field(default_factory=list)


def trainable_modules(backend: "FluxBackend", config: PretrainConfig) -> dict[str, torch.nn.Module]:
    """What stage 0 trains: the transformer, and T5 if ``train_text_encoder``."""
    modules = {"transformer": backend.transformer}
    if config.train_text_encoder:
        modules["text_encoder_2"] = backend.text_encoder_2
    return modules


def _optimizer(modules: dict[str, torch.nn.Module], config: PretrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": list(m.parameters()), "lr": config.learning_rate if name == "transformer"
               else config.text_learning_rate, "base_lr": config.learning_rate if name == "transformer"
               else config.text_learning_rate} for name, m in modules.items()]
    return torch.optim.AdamW(groups, weight_decay=0.0)


def _state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Trained parameters by name (tied ones, such as T5's shared embedding, once)."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.named_parameters()}


@torch.no_grad()
def _restore(modules: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    for key, param in _state(modules).items():
        if key not in tensors or tensors[key].shape != param.shape:
            raise ConfigError(f"The checkpoint has no tensor {key!r} of shape {tuple(param.shape)}; "
                              "it was written for another model. Use another output_dir.")
        param.copy_(tensors[key])


def pretrain(backend: "FluxBackend", config: PretrainConfig, pool: LatentPool | None = None,
             evaluate: Callable[[int], dict] | None = None, eval_every: int = 500,
             log: Callable[[str], None] | None = None) -> PretrainResult:
    """Train stage 0 until ``max_steps`` or the budget; resumes from ``output_dir``'s newest checkpoint.

    ``evaluate(step)`` (e.g. the oracle on generated images) runs every ``eval_every`` steps and
    at the end; its dict is logged and kept. Raises :class:`~smg_sdk.errors.ConfigError` when the
    checkpoint was written with other settings.
    """
    from ...atomic import check_output_folder
    from ...training.checkpoint import resume_checkpoint
    from ...training.loop import is_training_output

    root = check_output_folder(config.output_dir, "training", is_training_output)
    modules = trainable_modules(backend, config)
    for module in (backend.vae, backend.text_encoder, backend.transformer, backend.text_encoder_2):
        module.requires_grad_(False)
    for module in modules.values():  # eval mode throughout: no dropout, so a resumed run is bit-identical
        module.requires_grad_(True).eval()
    optimizer = _optimizer(modules, config)
    start = 0
    found = resume_checkpoint(root, config.run_config())
    if found is not None:
        _, tensors, optimizer_state, state = found
        _restore(modules, tensors)
        optimizer.load_state_dict(optimizer_state)
        start = int(state["step"])
    pool = pool if pool is not None else encode_pool(backend, config)
    return _loop(backend, config, modules, optimizer, pool, start, evaluate, eval_every, log or print)


def _loop(backend, config, modules, optimizer, pool, start, evaluate, eval_every, log) -> PretrainResult:
    from ...training.checkpoint import save_checkpoint

    result, began = PretrainResult(last_step=start), time.monotonic()
    params = [p for m in modules.values() for p in m.parameters()]

    def checkpoint(step: int) -> None:
        result.checkpoint = save_checkpoint(Path(config.output_dir), step, _state(modules), optimizer.state_dict(),
                                            {"config": config.run_config()})

    bar = tqdm(range(start, config.max_steps), desc="pretraining", initial=start, total=config.max_steps,
               disable=not config.progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(config, step)
        loss = flow_loss(backend, pool, config, step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
        done = result.last_step = step + 1
        out_of_time = config.budget_minutes is not None and time.monotonic() - began > 60 * config.budget_minutes
        if done % config.checkpoint_every == 0 or done == config.max_steps or out_of_time:
            checkpoint(done)
        if evaluate is not None and (done % eval_every == 0 or done == config.max_steps or out_of_time):
            line = {"step": done, "loss": float(np.mean(result.losses[-50:])), **evaluate(done)}
            result.evaluations.append(line)
            log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()))
        if out_of_time:
            log(f"budget of {config.budget_minutes} minutes reached at step {done}; resume to continue")
            break
    bar.close()
    for module in modules.values():
        module.requires_grad_(False)
    return result


__all__ = ["LatentPool", "PretrainConfig", "PretrainResult", "batch_indices", "encode_pool", "flow_loss", "lr_factor",
           "pretrain", "trainable_modules"]
