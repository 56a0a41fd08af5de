"""``smg train subjectworld``: the tiny preset's training recipes, as a product feature.

Three recipes, run in order, each resumable from its ``--out`` folder; the FLUX plugin
(:mod:`.plugin`) registers them under the registry kind ``recipe``
(:mod:`smg_sdk.training.recipes` has the contract and :class:`RecipeOptions`):

- ``vae``: the tiny AutoencoderKL on SubjectWorld renders (:mod:`smg_sdk.training.vae`);
  writes ``OUT/vae/`` (a diffusers folder).
- ``base``: stage 0, text-to-image pretraining of the transformer and T5 on captions-only
  scenes that follow the class priors (:mod:`.pretrain`), starting from a FLUX folder
  (``--from``, default the shipped preset) with the trained VAE (``--vae``); writes
  ``OUT/flux/``, a complete diffusers FLUX folder. The stand-in for FLUX.1-dev.
- ``reference-lora``: stage 1, the OminiControl-style subject adapter: VAE reference tokens
  plus a LoRA (rank 16, or ``--lora-rank``) routed to the reference stream only, trained on
  reference -> target pairs of training identities with the base frozen; writes ``OUT/adapter/``.

Every recipe prints periodic held-out evaluation lines (loss and the oracle's scores) and
writes atomic checkpoints; a rerun with ``resume`` continues bit-identically.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch

from ...training.loop import append_history
from ...training.recipes import RecipeOptions, SubjectWorldSamples


def _eval_steps() -> int:
    from ...presets.tiny import TINY_DEFAULTS

    return int(TINY_DEFAULTS["num_inference_steps"])


def _load_backend(folder: str | Path, vae: str | Path | None = None):
    from diffusers import AutoencoderKL

    from ...presets.tiny import TINY_DEFAULTS
    from .backend import FluxBackend

    backend = FluxBackend.from_pretrained(folder, max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
    if vae is not None:
        backend.vae = AutoencoderKL.from_pretrained(str(vae), local_files_only=True, use_safetensors=True)
        backend.vae.requires_grad_(False).eval()
    return backend


EVAL_TRUE_CFG = 3.0
"""The true-CFG scale of the ``cfg_*`` evaluation lines of a base trained with caption dropout."""


def _world_eval(pipe, options: RecipeOptions, counts: tuple[int, ...], text_only: bool) -> dict:
    """Mean oracle scores of ``pipe`` on held-out requests (a training evaluation line).

    A base trained with ``describe`` also reports ``described_identity``: identity accuracy when
    the text names each held-out identity in full (what the base can draw from words). A base
    trained with ``caption_dropout`` also reports its scores with true CFG at
    :data:`EVAL_TRUE_CFG` against the empty prompt (the negative keeps the references), prefixed ``cfg_``."""
    from ...eval.world_eval import heldout_scores

    names = ["identity", "instruction", "omission", "copy_paste"] + (["prior"] if text_only else [])

    def means(describe: bool, true_cfg_scale: float = 1.0) -> dict:
        return heldout_scores(pipe, counts, options.eval_samples, seed=1, steps=_eval_steps(), metrics=names,
                              no_references=text_only, describe=describe, true_cfg_scale=true_cfg_scale)

    line = means(False)
    if text_only and options.describe:
        line["described_identity"] = means(True)["identity"]
    if options.caption_dropout:
        line.update({f"cfg_{k}": v for k, v in means(False, EVAL_TRUE_CFG).items()})
        if options.describe:
            line["cfg_described_identity"] = means(True, EVAL_TRUE_CFG)["identity"]
    return line


def run_base(options: RecipeOptions, log: Callable[[str], None] = print) -> Path:
    """Stage 0; returns ``OUT/flux``."""
    from ...presets.tiny import tiny_flux_path
    from .pretrain import PretrainConfig, pretrain

    start = Path(options.start_from or tiny_flux_path())
    backend = _load_backend(start, options.vae)
    config = PretrainConfig(str(Path(options.out) / "checkpoints"), seed=options.seed, progress=options.progress,
                            budget_minutes=options.budget_minutes,
                            **{k: v for k, v in (("max_steps", options.steps), ("batch_size", options.batch_size),
                                                 ("pool_size", options.pool_size), ("subjects", options.subjects),
                                                 ("learning_rate", options.learning_rate),
                                                 ("lr_schedule", options.lr_schedule),
                                                 ("subject_weight", options.subject_weight),
                                                 ("describe", options.describe),
                                                 ("caption_dropout", options.caption_dropout)) if v is not None})
    from .plugin import tiny_pipeline

    pipe = tiny_pipeline(backend)  # requests without subjects use only its text encoder
    evaluate = (lambda step: _world_eval(pipe, options, (1, 2), text_only=True)) if options.eval_samples else None
    result = pretrain(backend, config, evaluate=evaluate, eval_every=options.eval_every or 250, log=log)
    append_history(Path(options.out) / "history.json", result.losses, result.evaluations)
    return _write_flux_folder(backend, start, Path(options.out) / "flux")


def _write_flux_folder(backend, start: Path, folder: Path) -> Path:
    """``start``'s files with the backend's VAE, transformer and T5 weights, atomically."""
    from ...atomic import atomic_folder

    with atomic_folder(folder, kind="flux-folder") as staging:
        for item in start.iterdir():
            if item.is_dir():
                shutil.copytree(item, staging / item.name)
            elif item.name != ".smg-output":
                shutil.copy2(item, staging / item.name)
        for name in ("vae", "transformer", "text_encoder_2"):
            shutil.rmtree(staging / name)
            getattr(backend, name).save_pretrained(str(staging / name), safe_serialization=True)
    return folder


def run_reference_lora(options: RecipeOptions, log: Callable[[str], None] = print) -> Path:
    """Stage 1; returns ``OUT/adapter/pytorch_lora_weights.safetensors`` (the LoRA in diffusers' format)."""
    from .plugin import tiny_pipeline
    from ...data.subjectworld import SubjectWorld
    from ...presets.tiny import SUBJECT_ADAPTER, tiny_flux_path
    from ...training.trainer import FlowMatchingTrainer, TrainerConfig

    backend = _load_backend(options.start_from or tiny_flux_path(), options.vae)
    torch.manual_seed(options.seed)  # LoRA A's initial values: the same run gives the same adapter
    backend.add_stream_adapter(SUBJECT_ADAPTER, rank=options.lora_rank or 16)
    position = {"position": options.position} if options.position else {}  # else the preset's default
    pipe = tiny_pipeline(backend, adapter=SUBJECT_ADAPTER, **position)
    world = SubjectWorld("train", "reference", options.seed, subjects=options.subjects or (1, 2))
    data = SubjectWorldSamples(world, options.pool_size or 4096, options.subject_weight,  # encoded once each
                               options.caption_dropout or 0.0, options.seed)
    config = TrainerConfig(str(Path(options.out) / "checkpoints"), max_steps=options.steps or 1500,
                           batch_size=options.batch_size or 8, learning_rate=options.learning_rate or 1e-3,
                           seed=options.seed,
                           height=128, width=128, guidance_scale=3.5, checkpoint_every=100,
                           progress=options.progress, cache_encodings=True, data=data.settings)
    trainer = FlowMatchingTrainer(pipe, backend.adapter_parameters(SUBJECT_ADAPTER), data, config)
    evaluate = (lambda step: _world_eval(pipe, options, (1, 2), text_only=False)) if options.eval_samples else None
    trainer.train(resume=True, budget_minutes=options.budget_minutes, evaluate=evaluate,
                  eval_every=options.eval_every or 250, log=log, history_file=str(Path(options.out) / "history.json"))
    if not trainer.accelerator.is_main_process:  # under accelerate launch, one process writes
        return Path(options.out) / "adapter" / "pytorch_lora_weights.safetensors"
    return backend.save_adapter(SUBJECT_ADAPTER, Path(options.out) / "adapter")


def run_vae(options: RecipeOptions, log: Callable[[str], None] = print) -> Path:
    """The VAE (:mod:`smg_sdk.training.vae`); returns ``OUT/vae``, exported from the newest checkpoint
    whether the run finished or stopped on its budget (a rerun continues it)."""
    from ...training.vae import VAEConfig, export_vae, train_vae

    sizes = {k: v for k, v in (("max_steps", options.steps), ("batch_size", options.batch_size)) if v is not None}
    config = VAEConfig(str(Path(options.out) / "checkpoints"), seed=options.seed, budget_minutes=options.budget_minutes,
                       threads=torch.get_num_threads(), progress=options.progress, export=False, **sizes)
    checkpoint = train_vae(config, log=log)
    return export_vae(checkpoint, Path(options.out) / "vae")


__all__ = ["RecipeOptions", "run_base", "run_reference_lora", "run_vae"]
