"""Train the tiny FLUX VAE (diffusers ``AutoencoderKL``, factor 8) on SubjectWorld renders.

The default recipe (measured on the shared 2-core machines; the run is in
``runs/subjectworld/vae/metrics.json``) is deterministic: the posterior *mode* is decoded (as
:meth:`FluxBackend.encode_images` uses it) and the loss is MSE plus a tiny KL term that keeps
the latents bounded. L1 left the subjects out for hundreds of steps (it predicts the
background, the median, wherever it is unsure); MSE learns them first. AdamW at 1e-3 (2e-3 and
5e-3 were worse) with a short warm-up, constant, then a cosine tail; bf16 autocast (fp32
master weights, ~1.7x faster on AVX-512 BF16 CPUs); no mid-block attention, so the model is
fully convolutional and trains on 64 px crops (batch 16) of 128 px renders mixed from three
sources (caption-kind targets, reference-kind targets, reference renders). Width at full
resolution matters most: blocks 8/16/32/64 learned far slower than 16/32/64/64 or 24/32/64/64.
One torch thread: on a machine shared with other jobs, two threads ran 2.4x slower per step.

Determinism is by construction, as in :mod:`smg_sdk.training.trainer`: the model is initialised
from ``seed``, every training image, source and crop is drawn from ``(seed, step, index)``, and
the learning rate is a function of the step, so a run resumed from a checkpoint continues
bit-identically (same thread count). Checkpoints are the trainer's atomic
``checkpoint-<step>/`` folders (safetensors weights, optimizer state, ``state.json``).

Entry points: :func:`train_vae` (a config in, the final checkpoint out, within a wall-clock
budget, resumable), :func:`export_vae` (a checkpoint to a diffusers folder with FLUX-style
``shift_factor`` / ``scaling_factor``), :func:`encode_latents` (pre-encode a range of
SubjectWorld samples once for the transformer stages).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_folder
from ..errors import ModelLoadError, SMGError
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import AutoencoderKL
    from PIL import Image

SOURCES = ("caption", "target", "reference")
"""Training image sources: caption-kind targets, reference-kind targets, reference renders."""


class VAETrainingError(SMGError, ValueError):
    """A VAE training configuration, checkpoint or latent file is unusable."""


@dataclass
class VAEConfig:
    """One VAE training run. ``output_dir`` receives ``checkpoint-<step>/`` folders and ``vae/``.

    Model: ``block_out_channels`` (one per down block; 4 blocks = factor 8 as FLUX),
    ``layers_per_block``, ``latent_channels``, ``norm_num_groups``, ``mid_block_attention``.
    Objective: ``loss`` (``"l1"``, ``"mse"`` or ``"l1+mse"``) on the decoded ``posterior``
    (``"mode"`` or ``"sample"``) plus ``kl_weight`` x KL. Schedule: linear warm-up over
    ``warmup_steps``, constant ``learning_rate``, cosine decay to ``min_lr_ratio`` x lr over the
    last ``decay_fraction`` of ``max_steps``. Data: ``batch_size`` crops of ``crop`` px from
    ``side`` px SubjectWorld train renders with 1..``max_subjects`` subjects.
    ``budget_minutes`` stops (with a checkpoint) after that much wall-clock time in this call.
    """

    output_dir: str
    max_steps: int = 4400
    batch_size: int = 16
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    decay_fraction: float = 0.3
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    loss: str = "mse"
    posterior: str = "mode"
    kl_weight: float = 1e-6
    block_out_channels: tuple[int, ...] = (24, 32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 16
    norm_num_groups: int = 8
    mid_block_attention: bool = False
    side: int = 128
    crop: int = 64
    max_subjects: int = 4
    seed: int = 0
    precision: str = "bf16"
    threads: int = 1
    eval_every: int = 500
    eval_samples: int = 32
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    budget_minutes: float | None = None
    resume: bool = True
    export: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        for name in ("max_steps", "batch_size", "layers_per_block", "latent_channels", "norm_num_groups",
                     "max_subjects", "threads", "eval_every", "checkpoint_every", "keep_checkpoints"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(0 <= self.warmup_steps, "warmup_steps", "must be >= 0")
        _require(self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate", "must be > 0")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
        _require(0 <= self.decay_fraction <= 1, "decay_fraction", "must be in [0, 1]")
        _require(self.kl_weight >= 0, "kl_weight", "must be >= 0")
        _require(self.loss in ("l1", "mse", "l1+mse"), "loss", "must be 'l1', 'mse' or 'l1+mse'")
        _require(self.posterior in ("mode", "sample"), "posterior", "must be 'mode' or 'sample'")
        _require(self.precision in ("bf16", "fp32"), "precision", "must be 'bf16' or 'fp32'")
        _require(len(self.block_out_channels) >= 2, "block_out_channels", "needs >= 2 blocks (4 for FLUX's factor 8)")
        _require(all(c % self.norm_num_groups == 0 for c in self.block_out_channels), "block_out_channels",
                 f"must all be multiples of norm_num_groups={self.norm_num_groups}")
        _require(self.side % 16 == 0 and self.side >= 64, "side", "must be a multiple of 16 and >= 64")
        factor = 2 ** (len(self.block_out_channels) - 1)
        _require(self.crop % factor == 0 and factor <= self.crop <= self.side, "crop",
                 f"must be a multiple of the VAE factor {factor} and <= side={self.side}")
        _require(1 <= self.max_subjects <= 6, "max_subjects", "must be in 1..6")
        _require(self.eval_samples >= 0, "eval_samples", "must be >= 0")
        _require(self.budget_minutes is None or self.budget_minutes > 0, "budget_minutes", "must be > 0 or None")

    def model_config(self) -> dict[str, Any]:
        """The ``AutoencoderKL`` constructor arguments (FLUX structure: no quant convs)."""
        n = len(self.block_out_channels)
        return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                    up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=self.block_out_channels,
                    layers_per_block=self.layers_per_block, latent_channels=self.latent_channels,
                    norm_num_groups=self.norm_num_groups, sample_size=self.side, use_quant_conv=False,
                    use_post_quant_conv=False, mid_block_add_attention=self.mid_block_attention)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VAEConfig":
        """A config from :func:`dataclasses.asdict` output (e.g. a checkpoint's ``state.json``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VAETrainingError(f"Unknown VAEConfig field {unknown[0]!r}; known fields: {', '.join(sorted(known))}.")
        return cls(**data)


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise VAETrainingError(f"VAEConfig.{name} {what}; fix the {name!r} argument.")


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# ---------------------------------------------------------------------------- model and data
def build_vae(config: VAEConfig) -> "AutoencoderKL":
    """A freshly initialised ``AutoencoderKL`` for ``config`` (weights seeded by ``config.seed``)."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AutoencoderKL(**config.model_config())


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 arrays -> ``(N, 3, H, W)`` float32 in [-1, 1] (FLUX's VAE input range)."""
    array = np.stack([np.asarray(i) for i in images]).astype(np.float32)
    return torch.from_numpy(array).permute(0, 3, 1, 2).div(127.5).sub(1.0).contiguous()


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8."""
    array = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


class WorldImages:
    """SubjectWorld renders for VAE training, each drawn from ``(seed, step, index)``."""

    def __init__(self, config: VAEConfig, split: str = "train"):
        from ..data.subjectworld import SubjectWorld

        counts = tuple(range(1, config.max_subjects + 1))
        self.config = config
        self.caption = SubjectWorld(split=split, kind="caption", seed=config.seed, subjects=counts, side=config.side)
        self.reference = SubjectWorld(split=split, kind="reference", seed=config.seed, subjects=counts, side=config.side)

    def image(self, step: int, index: int) -> np.ndarray:
        """The ``(crop, crop, 3)`` uint8 training image at ``(step, index)``."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, step, index, 7])
        flat = step * cfg.batch_size + index
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        if source == "caption":
            pixels = self.caption[flat].target_pixels
        else:
            sample = self.reference[flat]
            if source == "target":
                pixels = sample.target_pixels
            else:
                pixels = sample.reference_pixels[int(rng.integers(len(sample.reference_pixels)))][0]
        y, x = (int(v) for v in rng.integers(0, cfg.side - cfg.crop + 1, size=2))
        return pixels[y:y + cfg.crop, x:x + cfg.crop]

    def batch(self, step: int) -> torch.Tensor:
        """``(batch_size, 3, crop, crop)`` float32 in [-1, 1]."""
        return to_tensor([self.image(step, i) for i in range(self.config.batch_size)])


def heldout_images(count: int, seed: int = 0, side: int = 128, max_subjects: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Fixed held-out evaluation renders: ``count`` target scenes and ``count`` reference renders,
    each ``(count, side, side, 3)`` uint8, from ``split="heldout"`` reference-kind samples 0..count-1."""
    from ..data.subjectworld import SubjectWorld

    world = SubjectWorld(split="heldout", kind="reference", seed=seed, subjects=tuple(range(1, max_subjects + 1)),
                         side=side)
    samples = list(world.samples(count))
    empty = np.zeros((0, side, side, 3), np.uint8)
    targets = np.stack([s.target_pixels for s in samples]) if samples else empty
    references = np.stack([s.reference_pixels[0][0] for s in samples]) if samples else empty
    return targets, references


# ---------------------------------------------------------------------------- loss and evaluation
def reconstruction_loss(vae: "AutoencoderKL", pixels: torch.Tensor, config: VAEConfig,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total, reconstruction)`` losses of ``pixels`` ``(B, 3, H, W)`` in [-1, 1]; scalar tensors."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if config.precision == "bf16" else nullcontext()
    with autocast:
        posterior = vae.encode(pixels).latent_dist
        latents = posterior.mode() if config.posterior == "mode" else posterior.sample(generator=generator)
        decoded = vae.decode(latents).sample
    error = decoded.float() - pixels
    if config.loss == "l1":
        recon = error.abs().mean()
    elif config.loss == "mse":
        recon = error.square().mean()
    else:
        recon = error.abs().mean() + error.square().mean()
    total = recon
    if config.kl_weight > 0:
        mean, logvar = posterior.mean.float(), posterior.logvar.float()
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
        total = recon + config.kl_weight * kl
    return total, recon.detach()


@torch.no_grad()
def reconstruct(vae: "AutoencoderKL", images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Decode the posterior mode of ``(N, H, W, 3)`` uint8 images; returns ``(N, H, W, 3)`` uint8 (fp32)."""
    out = []
    for start in range(0, len(images), batch_size):
        pixels = to_tensor(images[start:start + batch_size])
        out.append(to_uint8(vae.decode(vae.encode(pixels).latent_dist.mode()).sample))
    return np.concatenate(out) if out else images.copy()


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of ``(N, H, W, 3)`` uint8 arrays (peak 255); ``(N,)`` float64."""
    error = (original.astype(np.float64) - reconstruction.astype(np.float64)) ** 2
    mse = np.maximum(error.reshape(len(original), -1).mean(axis=1), 1e-10)
    return 10.0 * np.log10(255.0 ** 2 / mse)


def evaluate(vae: "AutoencoderKL", targets: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Mean held-out PSNR (dB) on target scenes, on reference renders, and over both."""
    was_training = vae.training
    vae.eval()
    try:
        t, r = psnr(targets, reconstruct(vae, targets)), psnr(references, reconstruct(vae, references))
    finally:
        vae.train(was_training)
    return {"psnr_target": float(t.mean()), "psnr_reference": float(r.mean()),
            "psnr": float(np.concatenate([t, r]).mean())}


# ---------------------------------------------------------------------------- schedule and loop
def learning_rate(config: VAEConfig, step: int) -> float:
    """The learning rate at ``step`` (0-based): warm-up, constant, cosine tail."""
    lr = config.learning_rate
    if step < config.warmup_steps:
        return lr * (step + 1) / config.warmup_steps
    decay_start = config.max_steps * (1 - config.decay_fraction)
    if step < decay_start or config.decay_fraction == 0:
        return lr
    progress = min(1.0, (step - decay_start) / max(1.0, config.max_steps - decay_start))
    floor = lr * config.min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train_step(vae: "AutoencoderKL", optimizer: torch.optim.Optimizer, data: WorldImages, step: int) -> float:
    """One optimiser step at ``step``; returns the reconstruction loss."""
    cfg = data.config
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, step)
    generator = torch.Generator().manual_seed(_seed(cfg.seed, step, 3)) if cfg.posterior == "sample" else None
    total, recon = reconstruction_loss(vae, data.batch(step), cfg, generator)
    total.backward()
    if cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(recon)


def _restore(vae: "AutoencoderKL", optimizer: torch.optim.Optimizer, folder: Path,
             config: VAEConfig) -> tuple[int, dict, float]:
    """Load ``folder`` into ``vae`` and ``optimizer``; returns (step, history, training minutes so far)."""
    tensors, optimizer_state, state = load_checkpoint(folder)
    saved = state.get("config", {})
    for name in ("block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups", "mid_block_attention"):
        if name in saved and _plain(saved[name]) != _plain(getattr(config, name)):
            raise VAETrainingError(f"Checkpoint {folder} was trained with {name}={saved[name]}, the config has "
                                   f"{getattr(config, name)}; use another output_dir or resume=False.")
    missing, unexpected = vae.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise VAETrainingError(f"Checkpoint {folder} does not match the VAE ({(missing or unexpected)[0]!r}).")
    optimizer.load_state_dict(optimizer_state)
    return int(state["step"]), dict(state.get("history", {})), float(state.get("minutes", 0.0))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _save(root: Path, step: int, vae: "AutoencoderKL", optimizer: torch.optim.Optimizer, config: VAEConfig,
          history: dict, minutes: float) -> Path:
    """An atomic ``checkpoint-<step>``; keeps the newest ``config.keep_checkpoints`` of them."""
    path = save_checkpoint(root, step, dict(vae.state_dict()), optimizer.state_dict(),
                           {"config": asdict(config), "history": history, "minutes": minutes})
    found = sorted(int(p.name.split("-")[1]) for p in root.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    for old in found[:-config.keep_checkpoints]:
        _remove_checkpoint(root / f"checkpoint-{old}")
    return path


def _remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder this trainer wrote (only its three known files)."""
    for name in ("trainable.safetensors", "optimizer.pt", "optimizer.safetensors", "state.json", ".smg-output"):
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # something else lives there: leave it


def train_vae(config: VAEConfig, log: Callable[[str], None] | None = None) -> Path:
    """Train (or, with ``config.resume``, continue) a VAE; returns the final checkpoint folder.

    Stops at ``max_steps`` or after ``budget_minutes`` of wall-clock time, whichever comes first,
    with a checkpoint either way. Held-out PSNR lines go to ``log`` (default: the progress bar's
    ``write``). With ``config.export``, a run that reaches ``max_steps`` also writes the diffusers
    folder ``output_dir/vae`` (see :func:`export_vae`).
    """
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        root = Path(config.output_dir)
        vae = build_vae(config).train()
        optimizer = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        start, history, offset = 0, {}, 0.0
        last = latest_checkpoint(root) if config.resume else None
        if last is not None:
            start, history, offset = _restore(vae, optimizer, last, config)
        if start >= config.max_steps and last is not None:
            return _finish(config, last)
        data, (targets, references) = WorldImages(config), heldout_images(config.eval_samples, config.seed, config.side,
                                                                            config.max_subjects)
        bar = tqdm(range(start, config.max_steps), desc="vae", initial=start, total=config.max_steps,
                   disable=not config.progress)
        log = log or bar.write
        began, losses, path = time.monotonic(), [], last
        elapsed = lambda: offset + (time.monotonic() - began) / 60  # noqa: E731  cumulative training minutes
        for step in bar:
            losses.append(train_step(vae, optimizer, data, step))
            done = step + 1
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{learning_rate(config, step):.1e}")
            out_of_time = config.budget_minutes is not None and time.monotonic() - began >= 60 * config.budget_minutes
            if done % config.eval_every == 0 or done == config.max_steps or out_of_time:
                _record(history, done, losses, vae, targets, references, elapsed(), log)
                losses = []
            if done % config.checkpoint_every == 0 or done == config.max_steps or out_of_time:
                path = _save(root, done, vae, optimizer, config, history, elapsed())
            if out_of_time:
                log(f"vae: budget of {config.budget_minutes} min reached at step {done}; resume to continue.")
                return path
        bar.close()
        return _finish(config, path)
    finally:
        torch.set_num_threads(threads)


def _record(history: dict, step: int, losses: list[float], vae: "AutoencoderKL", targets: np.ndarray,
            references: np.ndarray, minutes: float, log: Callable[[str], None]) -> None:
    """Append step, mean loss, held-out PSNR and cumulative minutes to ``history``; log one line."""
    scores = evaluate(vae, targets, references) if len(targets) else {}
    row = {"step": step, "loss": round(float(np.mean(losses)), 5), "minutes": round(minutes, 3),
           "psnr_target": _rounded(scores.get("psnr_target")), "psnr_reference": _rounded(scores.get("psnr_reference"))}
    for key, value in row.items():
        history.setdefault(key, []).append(value)  # JSON-safe: None, never NaN
    line = f"vae step {step}: loss {row['loss']:.4f}"
    if scores:
        line += f"  held-out PSNR target {row['psnr_target']:.2f} dB  reference {row['psnr_reference']:.2f} dB"
    log(f"{line}  ({minutes:.1f} min)")


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def _finish(config: VAEConfig, checkpoint: Path) -> Path:
    """Export ``checkpoint`` to ``output_dir/vae`` when ``config.export``; returns ``checkpoint``."""
    if config.export:
        export_vae(checkpoint, Path(config.output_dir) / "vae", stats_samples=max(64, config.eval_samples))
    return checkpoint


# ---------------------------------------------------------------------------- export and latents
def load_trained_vae(checkpoint: str | Path) -> tuple["AutoencoderKL", VAEConfig, dict[str, Any]]:
    """The VAE of a ``checkpoint-<step>`` folder in eval mode, its config and its ``state.json``."""
    folder = Path(checkpoint)
    tensors, _, state = load_checkpoint(folder)
    if "config" not in state:
        raise VAETrainingError(f"Checkpoint {folder} has no config in state.json; was it written by train_vae?")
    config = VAEConfig.from_dict(state["config"])
    vae = build_vae(config)
    missing, unexpected = vae.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise VAETrainingError(f"Checkpoint {folder} does not match its config ({(missing or unexpected)[0]!r}).")
    return vae.eval(), config, state


@torch.no_grad()
def latent_statistics(vae: "AutoencoderKL", images: np.ndarray, batch_size: int = 32) -> tuple[float, float]:
    """FLUX-style ``(shift_factor, scaling_factor)``: the mean of the posterior modes of ``images``
    ``(N, H, W, 3)`` uint8 over every element, and 1 / their standard deviation."""
    chunks = [vae.encode(to_tensor(images[s:s + batch_size])).latent_dist.mode().double()
              for s in range(0, len(images), batch_size)]
    latents = torch.cat(chunks)
    mean, std = float(latents.mean()), float(latents.std())
    return mean, 1.0 / max(std, 1e-8)


def recon_grid(originals: np.ndarray, reconstructions: np.ndarray, columns: int = 8) -> "Image.Image":
    """A PNG-ready sheet: rows of ``columns`` originals, each above its reconstruction (2 px gaps)."""
    from PIL import Image

    n, h, w, _ = originals.shape
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (2 * h + 6), columns * (w + 2), 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = r * (2 * h + 6), c * (w + 2)
        sheet[y:y + h, x:x + w] = originals[i]
        sheet[y + h + 2:y + 2 * h + 2, x:x + w] = reconstructions[i]
    return Image.fromarray(sheet, "RGB")


def export_vae(checkpoint: str | Path, folder: str | Path, stats_samples: int = 128, eval_samples: int = 64,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint``'s VAE as a diffusers folder (``save_pretrained``, safetensors) with
    ``shift_factor`` / ``scaling_factor`` from ``stats_samples`` held-out targets + references,
    plus ``metrics.json`` (held-out PSNR on ``eval_samples`` of each, steps, minutes, ``extra``)
    and ``recon.png`` (8 targets and 8 references above their reconstructions). Atomic."""
    vae, config, state = load_trained_vae(checkpoint)
    targets, references = heldout_images(max(stats_samples, eval_samples, 8), config.seed, config.side,
                                         config.max_subjects)
    shift, scale = latent_statistics(vae, np.concatenate([targets[:stats_samples], references[:stats_samples]]))
    vae.register_to_config(shift_factor=round(shift, 4), scaling_factor=round(scale, 4), force_upcast=False)
    scores = evaluate(vae, targets[:eval_samples], references[:eval_samples])
    metrics = {**{k: round(v, 2) for k, v in scores.items()}, "eval_samples": eval_samples,
               "stats_samples": 2 * stats_samples, "steps": int(state["step"]),
               "minutes": round(float(state.get("minutes", 0.0)), 1), "shift_factor": round(shift, 4),
               "scaling_factor": round(scale, 4), "parameters": sum(p.numel() for p in vae.parameters()),
               "config": state["config"], "history": state.get("history", {}), **(extra or {})}
    shown = np.concatenate([targets[:8], references[:8]])
    with atomic_folder(folder) as staging:
        vae.save_pretrained(staging, safe_serialization=True)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        recon_grid(shown, reconstruct(vae, shown)).save(staging / "recon.png")
    return Path(folder).resolve()


def _load_vae_folder(vae: "AutoencoderKL | str | Path") -> "AutoencoderKL":
    if not isinstance(vae, (str, Path)):
        return vae.eval()
    from diffusers import AutoencoderKL

    folder = Path(vae)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"VAE folder {folder} has no config.json; pass a folder written by export_vae.")
    return AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()


@torch.no_grad()
def normalised_latents(vae: "AutoencoderKL", images: Sequence[np.ndarray], batch_size: int = 32) -> torch.Tensor:
    """Posterior modes of ``(H, W, 3)`` uint8 images, normalised as FLUX's backend uses them,
    ``(z - shift_factor) * scaling_factor``: ``(N, C, H/8, W/8)`` float32 on the VAE's device."""
    parameter = next(vae.parameters())
    shift, scale = float(vae.config.shift_factor or 0.0), float(vae.config.scaling_factor)
    chunks = [vae.encode(to_tensor(images[s:s + batch_size]).to(parameter.device, parameter.dtype)).latent_dist.mode()
              for s in range(0, len(images), batch_size)]
    return (torch.cat(chunks).float() - shift) * scale


@torch.no_grad()
def encode_latents(vae: "AutoencoderKL | str | Path", path: str | Path, start: int, count: int, split: str = "train",
                   kind: str = "reference", seed: int = 0, subjects: Sequence[int] = (1, 2, 3, 4), side: int = 128,
                   batch_size: int = 32, dtype: torch.dtype = torch.float16) -> Path:
    """Pre-encode SubjectWorld samples ``start .. start + count - 1`` once into a safetensors file.

    Latents are the posterior mode normalised as the backend uses them, ``(z - shift) * scale``:
    ``target`` ``(N, C, side/8, side/8)`` and ``index`` ``(N,)`` (the world index); for
    ``kind="reference"`` also every reference render, ``reference`` ``(M, C, side/8, side/8)`` with
    ``reference_sample`` ``(M,)`` (row in ``target``), ``reference_subject`` ``(M,)`` (1-based) and
    ``reference_render`` ``(M,)``. The metadata records the world, range and factors. Atomic.
    """
    from ..data.subjectworld import SubjectWorld

    if count < 1 or start < 0:
        raise VAETrainingError(f"encode_latents needs start >= 0 and count >= 1, got start={start}, count={count}.")
    model = _load_vae_folder(vae)
    shift, scale = float(model.config.shift_factor or 0.0), float(model.config.scaling_factor)
    world = SubjectWorld(split=split, kind=kind, seed=seed, subjects=tuple(subjects), side=side)
    encode = lambda images: normalised_latents(model, images, batch_size).to(dtype)  # noqa: E731
    targets, refs, owners = [], [], []
    for row, sample in enumerate(world.samples(count, start)):
        targets.append(sample.target_pixels)
        for k, renders in enumerate(sample.reference_pixels, start=1):
            for r, pixels in enumerate(renders):
                refs.append(pixels)
                owners.append((row, k, r))
    tensors = {"target": encode(targets), "index": torch.arange(start, start + count, dtype=torch.int64)}
    if refs:
        tensors["reference"] = encode(refs)
        table = torch.tensor(owners, dtype=torch.int64)
        tensors.update(reference_sample=table[:, 0].contiguous(), reference_subject=table[:, 1].contiguous(),
                       reference_render=table[:, 2].contiguous())
    meta = {"split": split, "kind": kind, "seed": seed, "subjects": list(world.subjects), "side": side,
            "start": start, "count": count, "shift_factor": shift, "scaling_factor": scale, "normalized": True}
    return _write_safetensors(Path(path), tensors, {"smg_latents": json.dumps(meta, sort_keys=True)})


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write beside ``path`` and rename into place, so a killed run never leaves half a file."""
    import os
    import tempfile

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.resolve()


def load_latents(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a file written by :func:`encode_latents`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Latent file {path} does not exist; write it with encode_latents.")
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("smg_latents")
    if raw is None:
        raise VAETrainingError(f"{path} is not a latent file written by encode_latents (no smg_latents metadata).")
    return load_file(str(path)), json.loads(raw)


__all__ = [
    "SOURCES", "VAEConfig", "VAETrainingError", "WorldImages", "build_vae", "encode_latents", "evaluate", "export_vae",
    "heldout_images", "latent_statistics", "learning_rate", "load_latents", "load_trained_vae", "psnr", "reconstruct",
    "recon_grid", "train_vae",
]
