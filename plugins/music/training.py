"""Teaching the MLLM planner to write plans: LoRA or the whole MLLM, LM loss on the plan tokens only.

Each training example is the planner's own prompt (system turn, every reference picture, the
instruction and the format, exactly what :class:`~smg_plugins.music.planner.MusicPlanner`
shows at inference) followed by the sample's plan in the strict format
(:func:`~smg_plugins.music.plan_format.format_plan`) and the end-of-turn token. Labels are -100
on the prompt, so the loss is the language-model loss of the plan alone. With probability
``decimation_probability`` a sample is swapped for one of its decimations (fewer subjects,
ids renumbered), the paper's augmentation.

Two ways to train (``PlannerTrainingConfig.train``):

- ``"lora"`` (default): a peft LoRA on the language model's attention projections (the vision
  tower is left alone), saved in peft's format (``adapter_config.json`` +
  ``adapter_model.safetensors``) as ``output_dir/adapter`` and loaded by the ``music`` planner
  with ``adapter_path=``. For a pretrained MLLM.
- ``"full"``: every tensor of the MLLM (vision tower included), saved as a complete
  transformers folder ``output_dir/planner`` (``config.json``, ``model.safetensors``, the
  tokenizer and processor files with the chat template), loaded with ``model_path=``. For a
  model that knows nothing yet, such as the tiny Qwen2.5-VL.

Training loads a private copy of the MLLM, so a model shared with other components is never
changed. The loop is the SDK's :class:`~smg_sdk.training.TrainingLoop` (the one every recipe
runs): checkpoints (``checkpoint-<step>/``) are atomic, a run resumes exactly, and a time
budget stops it after a checkpoint. With ``eval_every`` and an evaluation set, the plan-token
loss on those fixed samples is logged as evaluation lines (and kept in ``history.json``).
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
TRAIN_MODES = ("lora", "full")
HISTORY_FILE = "history.json"


@dataclass
class PlannerTrainingConfig:
    """Hyper-parameters of planner training; ``output_dir`` receives checkpoints, ``history.json`` and
    ``adapter/`` (``train="lora"``) or ``planner/`` (``train="full"``, a complete model folder).

    ``lora_*``, ``target_modules`` and ``adapter_name`` apply to ``"lora"`` only; ``eval_every``:
    steps between evaluation lines (plan-token loss on the trainer's evaluation set; None: none).
    """

    output_dir: str
    train: str = "lora"
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
    eval_every: int | None = None

    def __post_init__(self) -> None:
        if self.train not in TRAIN_MODES:
            raise SMGError(f"PlannerTrainingConfig train must be one of {', '.join(TRAIN_MODES)}, got {self.train!r}.")
        if self.eval_every is not None and self.eval_every < 1:
            raise SMGError(f"PlannerTrainingConfig eval_every must be >= 1 or None, got {self.eval_every!r}.")
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.lora_rank < 1:
            raise SMGError("max_steps, batch_size, checkpoint_every and lora_rank must all be >= 1.")
        if not 0 <= self.decimation_probability <= 1:
            raise SMGError("decimation_probability must be between 0 and 1.")


def _is_training_output(folder: Path) -> bool:
    return is_training_output(folder) or (folder / "adapter").exists() or (folder / "planner").exists()


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def save_planner_model(mllm: Any, folder: str | Path) -> Path:
    """Write ``mllm`` (model + processor, tokenizer, chat template) to ``folder`` as a complete
    transformers folder, safetensors only, atomically; load it with ``MusicPlanner(model_path=...)``.

    Raises :class:`~smg_sdk.SMGError` if ``mllm`` carries a planner LoRA (save that with
    :func:`save_planner_adapter`), and if ``folder`` exists and is not an earlier planner folder.
    """
    if getattr(mllm.model, "_music_planner_lora", None) is not None:
        raise SMGError("This MLLM carries a planner LoRA; save it with save_planner_adapter(), not as a whole model.")
    folder = Path(folder).expanduser().resolve()
    with atomic_folder(folder, kind="planner model", recognise=_is_model_folder) as staging:
        mllm.model.save_pretrained(str(staging), safe_serialization=True)
        mllm.processor.save_pretrained(str(staging))
        unsafe = sorted(p.name for p in staging.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        if unsafe:
            raise SMGError(f"Saving the planner wrote pickle files {unsafe}; refusing to keep them.")
    return folder


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
    """Training of an MLLM (a LoRA, or the whole model) to write MUSIC plans (see the module docstring).

    ``dataset``: any sequence of :class:`MusicSample` (indexed lazily, e.g.
    :class:`~smg_plugins.music.world_data.WorldPlannerData`); ``eval_set``: fixed samples whose
    plan-token loss makes the evaluation lines (with ``config.eval_every``).
    """

    def __init__(self, mllm: Any, dataset: Sequence[MusicSample], config: PlannerTrainingConfig,
                 eval_set: Sequence[MusicSample] = ()):
        if len(dataset) == 0:
            raise SMGError("The planner training dataset is empty.")
        self.mllm, self.config = mllm, config
        self.dataset = dataset if isinstance(dataset, Sequence) else list(dataset)
        self.eval_set = list(eval_set)
        if config.train == "full":
            if getattr(mllm.model, "_music_planner_lora", None) is not None:
                raise SMGError("train='full' needs an MLLM without a planner LoRA; load a fresh copy.")
            mllm.model.requires_grad_(True)
            self.trainable = dict(mllm.model.named_parameters())
        else:
            self.trainable = self._lora_parameters()
        self.optimizer = torch.optim.AdamW(list(self.trainable.values()), lr=config.learning_rate)

    def _lora_parameters(self) -> dict[str, torch.Tensor]:
        cfg, mllm = self.config, self.mllm
        if getattr(mllm.model, "_music_planner_lora", None) is None:
            add_planner_adapter(mllm, cfg.lora_rank, cfg.lora_alpha, cfg.target_modules, cfg.adapter_name, cfg.seed)
        mllm.model.requires_grad_(False)
        trainable = {n: p for n, p in mllm.model.named_parameters() if "lora_" in n}
        if not trainable:
            raise SMGError(f"target_modules {cfg.target_modules!r} matched no layer of this MLLM.")
        for p in trainable.values():
            p.requires_grad_(True)
        return trainable

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
        evaluating = cfg.eval_every is not None and bool(self.eval_set)
        history = str(Path(cfg.output_dir).expanduser() / HISTORY_FILE)
        settings = LoopConfig(cfg.output_dir, cfg.max_steps, cfg.checkpoint_every, asdict(cfg), RESUME_MAY_CHANGE,
                              cfg.max_grad_norm, cfg.progress, description="planner training",
                              output_kind="planner training", eval_every=cfg.eval_every if evaluating else None,
                              history_file=history)
        evaluate = (lambda step: {"eval_loss": self.evaluate(self.eval_set)}) if evaluating else None
        return TrainingLoop(self.trainable, self.optimizer, self.batch_loss, settings, recognise=_is_training_output,
                            evaluate=evaluate, log=self.log)

    def log(self, line: str) -> None:
        """Where evaluation and budget lines go (stdout; through tqdm's writer when a bar is shown)."""
        from tqdm.auto import tqdm

        tqdm.write(line)

    def train(self, resume: bool = True, budget_minutes: float | None = None) -> TrainResult:
        """Train to ``max_steps`` (resuming from the newest checkpoint) or ``budget_minutes``; saves
        ``output_dir/adapter`` (LoRA) or ``output_dir/planner`` (full) either way (a rerun with
        ``resume`` continues a stopped run)."""
        self.mllm.model.train()
        try:
            result = self.loop().run(resume, budget_minutes)
        finally:
            self.mllm.model.eval()
        out = Path(self.config.output_dir).expanduser().resolve()
        if self.config.train == "full":
            save_planner_model(self.mllm, out / "planner")
        else:
            save_planner_adapter(self.mllm, out / "adapter")
        return result


def train_planner(
    dataset: Sequence[MusicSample], config: PlannerTrainingConfig, model_path: str | None = None,
    trust_remote_code: bool = False, eval_set: Sequence[MusicSample] = (), resume: bool = True,
    budget_minutes: float | None = None,
) -> tuple[PlannerTrainer, TrainResult]:
    """Load a private copy of the MLLM (default: the random tiny Qwen2.5-VL), train, save the result.

    Use it with ``MusicPlanner(model_path=..., adapter_path=f"{output_dir}/adapter")`` (LoRA) or
    ``MusicPlanner(model_path=f"{output_dir}/planner")`` (``train="full"``).
    """
    from smg_sdk import load_mllm

    if model_path is None:
        from smg_sdk import tiny_qwen_vl_path

        model_path = str(tiny_qwen_vl_path())
    mllm = load_mllm(model_path, trust_remote_code=trust_remote_code, reuse=False)
    trainer = PlannerTrainer(mllm, dataset, config, eval_set)
    return trainer, trainer.train(resume, budget_minutes)


__all__ = [
    "LM_ATTENTION", "PlannerTrainer", "PlannerTrainingConfig", "TRAIN_MODES", "add_planner_adapter",
    "load_planner_adapter", "save_planner_adapter", "save_planner_model", "train_planner",
]
