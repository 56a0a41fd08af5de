"""Teaching the MLLM planner to write plans: LoRA on the MLLM, LM loss on the plan tokens only.

Each training example is the planner's own prompt (system turn, every reference picture, the
instruction and the format, exactly what :class:`~smg_plugins.music.planner.MusicPlanner`
shows at inference) followed by the sample's plan in the strict format
(:func:`~smg_plugins.music.plan_format.format_plan`) and the end-of-turn token. Labels are -100
on the prompt, so the loss is the language-model loss of the plan alone. With probability
``decimation_probability`` a sample is swapped for one of its decimations (fewer subjects,
ids renumbered), the paper's augmentation.

The adapter is a peft LoRA on the language model's attention projections (the vision tower is
left alone); it is saved in peft's format (``adapter_config.json`` +
``adapter_model.safetensors``) and loaded by the ``music`` planner with ``adapter_path=``.
Training loads a private copy of the MLLM, so a model shared with other components is never
changed. The loop is the SDK's :class:`~smg_sdk.training.TrainingLoop` (the one every recipe
runs): checkpoints (``checkpoint-<step>/``) are atomic, a run resumes exactly, and a time
budget stops it after a checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from smg_sdk import (
    LoopConfig,
    ModelLoadError,
    RESUME_MAY_CHANGE,
    Request,
    SMGError,
    TrainResult,
    TrainingLoop,
    atomic_folder,
    is_training_output,
    sample_index,
    sample_rng,
)

from .data import MusicSample, decimate
from .plan_format import format_plan
from .prompting import SYSTEM_PROMPT, planner_message

LM_ATTENTION = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
"""peft ``target_modules`` regex: attention projections of the language model, not the vision tower."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class PlannerTrainingConfig:
    """Hyper-parameters of planner training; ``output_dir`` receives checkpoints and ``adapter/``."""

    output_dir: str
    max_steps: int = 200
    learning_rate: float = 5e-4
    batch_size: int = 2
    lora_rank: int = 16
    lora_alpha: float | None = None
    target_modules: str = LM_ATTENTION
    adapter_name: str = "music-planner"
    decimation_probability: float = 0.5
    image_size: int = 64
    rows: int = 8
    cols: int = 8
    seed: int = 0
    checkpoint_every: int = 50
    max_grad_norm: float | None = 1.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.lora_rank < 1:
            raise SMGError("max_steps, batch_size, checkpoint_every and lora_rank must all be >= 1.")
        if not 0 <= self.decimation_probability <= 1:
            raise SMGError("decimation_probability must be between 0 and 1.")


def _is_training_output(folder: Path) -> bool:
    return is_training_output(folder) or (folder / "adapter").exists()


def _is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_FILES[0]).is_file()


def add_planner_adapter(mllm: Any, rank: int = 16, alpha: float | None = None, target_modules: str = LM_ATTENTION,
                        adapter_name: str = "music-planner", seed: int = 0) -> None:
    """Insert a fresh LoRA adapter into ``mllm.model`` (peft, in place), initialised from ``seed``."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=target_modules,
                        lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, mllm.model, adapter_name=adapter_name)
    mllm.model._music_planner_lora = (adapter_name, config)


def save_planner_adapter(mllm: Any, folder: str | Path) -> Path:
    """Write the planner adapter of ``mllm`` to ``folder`` in peft's format, atomically."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    info = getattr(mllm.model, "_music_planner_lora", None)
    if info is None:
        raise SMGError("This MLLM has no planner adapter; add one with add_planner_adapter() first.")
    name, config = info
    state = get_peft_model_state_dict(mllm.model, adapter_name=name)
    folder = Path(folder).resolve()
    with atomic_folder(folder, kind="planner adapter", recognise=_is_adapter) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(staging / ADAPTER_FILES[1]))
        raw = config.to_dict()
        raw = {k: (sorted(v) if isinstance(v, set) else v) for k, v in raw.items()}
        (staging / ADAPTER_FILES[0]).write_text(json.dumps(raw, indent=2, sort_keys=True, default=str))
    return folder


def load_planner_adapter(mllm: Any, folder: str | Path, adapter_name: str = "music-planner") -> None:
    """Load an adapter written by :func:`save_planner_adapter` into ``mllm`` (use a private copy)."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelLoadError(f"{folder} is not a planner adapter folder: {', '.join(missing)} missing.")
    raw = json.loads((folder / ADAPTER_FILES[0]).read_text())
    fields = set(LoraConfig.__dataclass_fields__)
    config = LoraConfig(**{k: v for k, v in raw.items() if k in fields and k not in ("peft_type", "task_type")})
    inject_adapter_in_model(config, mllm.model, adapter_name=adapter_name)
    result = set_peft_model_state_dict(mllm.model, load_file(str(folder / ADAPTER_FILES[1])), adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ModelLoadError(f"{folder} does not fit this MLLM (unexpected tensor {unexpected[0]!r}).")
    mllm.model._music_planner_lora = (adapter_name, config)
    mllm.model.eval()


class PlannerTrainer:
    """LoRA training of an MLLM to write MUSIC plans (see the module docstring)."""

    def __init__(self, mllm: Any, dataset: Sequence[MusicSample], config: PlannerTrainingConfig):
        if len(dataset) == 0:
            raise SMGError("The planner training dataset is empty.")
        self.mllm, self.dataset, self.config = mllm, list(dataset), config
        if getattr(mllm.model, "_music_planner_lora", None) is None:
            add_planner_adapter(mllm, config.lora_rank, config.lora_alpha, config.target_modules, config.adapter_name,
                                config.seed)
        mllm.model.requires_grad_(False)
        self.trainable = {n: p for n, p in mllm.model.named_parameters() if "lora_" in n}
        if not self.trainable:
            raise SMGError(f"target_modules {config.target_modules!r} matched no layer of this MLLM.")
        for p in self.trainable.values():
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(list(self.trainable.values()), lr=config.learning_rate)

    # ------------------------------------------------------------------ examples
    def example(self, sample: MusicSample) -> dict[str, torch.Tensor]:
        """Model inputs with ``labels`` (-100 on the prompt) for one sample."""
        cfg, mllm = self.config, self.mllm
        request = Request(prompt=sample.instruction, subjects=list(sample.subjects), height=64, width=64)
        inputs = mllm.build_inputs(
            planner_message(request, cfg.rows, cfg.cols), [s.pil() for s in sample.subjects],
            image_size=cfg.image_size, system=SYSTEM_PROMPT, add_generation_prompt=True,
        )
        tokenizer = mllm.tokenizer
        target = tokenizer(format_plan(sample.plan()), add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            target = target + [int(tokenizer.eos_token_id)]
        target_ids = torch.tensor([target], dtype=torch.long)
        tensors = dict(inputs.to(mllm.device, mllm.dtype).tensors)
        prompt_ids = tensors["input_ids"]
        extra = target_ids.shape[1]
        for key, value in list(tensors.items()):  # per-token side inputs (e.g. mm_token_type_ids): text = 0
            per_token = torch.is_tensor(value) and value.shape == prompt_ids.shape
            if key not in ("input_ids", "attention_mask") and per_token:
                tensors[key] = torch.cat([value, value.new_zeros(1, extra)], dim=1)
        tensors["input_ids"] = torch.cat([prompt_ids, target_ids.to(prompt_ids.device)], dim=1)
        tensors["attention_mask"] = torch.ones_like(tensors["input_ids"])
        labels = tensors["input_ids"].clone()
        labels[:, : prompt_ids.shape[1]] = -100
        tensors["labels"] = labels
        return tensors

    def sample_loss(self, sample: MusicSample) -> torch.Tensor:
        """Mean LM loss over the plan tokens of one sample."""
        return self.mllm.model(**self.example(sample), use_cache=False).loss

    def sample_at(self, step: int, index: int) -> MusicSample:
        """The (possibly decimated) sample used at ``(step, index)``: seeded, so runs resume exactly."""
        cfg = self.config
        sample = self.dataset[sample_index(cfg.seed, step, index, cfg.batch_size, len(self.dataset))]
        rng = sample_rng(cfg.seed, step, index)
        if rng.random() < self.config.decimation_probability:
            smaller = decimate(sample)
            if smaller:
                sample = rng.choice(smaller)
        return sample

    @torch.no_grad()
    def evaluate(self, samples: Sequence[MusicSample]) -> float:
        """Mean plan-token LM loss on fixed samples (no augmentation)."""
        was_training = self.mllm.model.training
        self.mllm.model.eval()
        try:
            return float(np.mean([self.sample_loss(s).item() for s in samples]))
        finally:
            self.mllm.model.train(was_training)

    # ------------------------------------------------------------------ loop
    def batch_loss(self, step: int) -> torch.Tensor:
        """Mean plan-token LM loss of the step's samples (see :meth:`sample_at`)."""
        return torch.stack([self.sample_loss(self.sample_at(step, i)) for i in range(self.config.batch_size)]).mean()

    def loop(self) -> TrainingLoop:
        """The SDK's :class:`TrainingLoop` on :meth:`batch_loss` of the adapter's tensors."""
        cfg = self.config
        settings = LoopConfig(cfg.output_dir, cfg.max_steps, cfg.checkpoint_every, asdict(cfg), RESUME_MAY_CHANGE,
                              cfg.max_grad_norm, cfg.progress, description="planner training",
                              output_kind="planner training")
        return TrainingLoop(self.trainable, self.optimizer, self.batch_loss, settings, recognise=_is_training_output)

    def train(self, resume: bool = True, budget_minutes: float | None = None) -> TrainResult:
        """Train to ``max_steps`` (resuming from the newest checkpoint) or ``budget_minutes``; saves
        ``output_dir/adapter`` either way (a rerun with ``resume`` continues a stopped run)."""
        self.mllm.model.train()
        try:
            result = self.loop().run(resume, budget_minutes)
        finally:
            self.mllm.model.eval()
        save_planner_adapter(self.mllm, Path(self.config.output_dir).expanduser().resolve() / "adapter")
        return result


def train_planner(
    dataset: Sequence[MusicSample], config: PlannerTrainingConfig, model_path: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PlannerTrainer, TrainResult]:
    """Load a private copy of the MLLM (default: the tiny Qwen2.5-VL), train, save the adapter.

    Use the result with ``MusicPlanner(model_path=..., adapter_path=f"{output_dir}/adapter")``.
    """
    from smg_sdk import load_mllm

    if model_path is None:
        from smg_sdk import tiny_qwen_vl_path

        model_path = str(tiny_qwen_vl_path())
    mllm = load_mllm(model_path, trust_remote_code=trust_remote_code, reuse=False)
    trainer = PlannerTrainer(mllm, dataset, config)
    return trainer, trainer.train()


__all__ = [
    "LM_ATTENTION", "PlannerTrainer", "PlannerTrainingConfig", "add_planner_adapter", "load_planner_adapter",
    "save_planner_adapter", "train_planner",
]
