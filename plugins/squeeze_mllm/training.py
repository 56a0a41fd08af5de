"""Squeeze-MLLM's two-stage training recipe on the SDK's generic trainer.

Stage 1 teaches the aggregator to condition FLUX from MLLM features alone (MLLM frozen, no
VAE references). Stage 2 adds the VAE identity references and trains the reference LoRA
together with the aggregator. Both stages are ordinary :class:`FlowMatchingTrainer` runs
with their own output folders, so each checkpoints and resumes on its own; a stage of 0
steps is skipped. ``smg train subjectworld --recipe squeeze`` (:mod:`.recipe`) runs this plan
on SubjectWorld pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from smg_sdk import (
    FlowMatchingTrainer,
    SMGError,
    SubjectPipeline,
    TrainResult,
    TrainerConfig,
    TrainerHook,
    TrainingSample,
    component_name,
    module_parameters,
)

from .streams import OUT_STREAM


@dataclass
class SqueezeTrainingPlan:
    """Steps and learning rates of both stages; outputs go to ``<output_dir>/stage1|stage2``.

    ``guidance_scale``: the FLUX guidance embedding's value during training (the tiny preset
    samples at 3.5); the other fields are :class:`~smg_sdk.TrainerConfig`'s. A stage of 0 steps
    is skipped."""

    output_dir: str
    stage1_steps: int = 100
    stage2_steps: int = 100
    stage1_lr: float = 1e-4
    stage2_lr: float = 5e-5
    batch_size: int = 1
    height: int = 64
    width: int = 64
    seed: int = 0
    checkpoint_every: int = 50
    progress: bool = True
    guidance_scale: float = 1.0
    data: dict = field(default_factory=dict)
    """What the training samples are (``TrainerConfig.data``: checked on resume)."""

    def steps(self, stage: int) -> int:
        return self.stage1_steps if stage == 1 else self.stage2_steps

    def config(self, stage: int) -> TrainerConfig:
        return TrainerConfig(
            output_dir=str(Path(self.output_dir) / f"stage{stage}"),
            max_steps=self.steps(stage),
            learning_rate=self.stage1_lr if stage == 1 else self.stage2_lr,
            batch_size=self.batch_size, height=self.height, width=self.width, seed=self.seed,
            checkpoint_every=self.checkpoint_every, progress=self.progress, guidance_scale=self.guidance_scale,
            data=dict(self.data),
        )


def _aggregator(pipe: SubjectPipeline):
    for aggregator in pipe.aggregators:
        if getattr(aggregator, "out_stream", None) == OUT_STREAM and hasattr(aggregator, "parameters"):
            return aggregator
    raise SMGError("The pipeline has no Squeeze-MLLM aggregator (dla, lap, last-layer or fixed-layers).")


IDENTITY_ENCODERS = {"vae-reference"}
"""Registered names of the encoders that add VAE identity references (left out of stage 1)."""


def _identity_adapters(pipe: SubjectPipeline) -> list[str]:
    return sorted({e.adapter for e in pipe.encoders
                   if component_name(e) in IDENTITY_ENCODERS and getattr(e, "adapter", None)})


def stage1_pipeline(pipe: SubjectPipeline) -> SubjectPipeline:
    """The same components without the VAE identity encoders: MLLM conditioning only."""
    encoders = [e for e in pipe.encoders if component_name(e) not in IDENTITY_ENCODERS]
    return SubjectPipeline(pipe.backend, encoders, pipe.aggregators, pipe.rules, None, defaults=pipe.defaults)


def train_stage1(pipe: SubjectPipeline, dataset: Sequence[TrainingSample], plan: SqueezeTrainingPlan,
                 hooks: Sequence[TrainerHook] = (), resume: bool = True, **run: Any) -> TrainResult:
    """Stage 1: the aggregator alone on the pipeline without its VAE identity encoders.

    ``run``: :meth:`FlowMatchingTrainer.train`'s keyword options (``budget_minutes``, ``evaluate``,
    ``eval_every``, ``log``, ``history_file``). 0 steps: nothing runs (an empty result)."""
    if plan.stage1_steps == 0:
        return TrainResult()
    aggregator = _aggregator(pipe)
    trainer = FlowMatchingTrainer(stage1_pipeline(pipe), module_parameters("aggregator", aggregator), dataset,
                                  plan.config(1), hooks)
    return trainer.train(resume=resume, **run)


def train_stage2(pipe: SubjectPipeline, dataset: Sequence[TrainingSample], plan: SqueezeTrainingPlan,
                 hooks: Sequence[TrainerHook] = (), resume: bool = True, **run: Any) -> TrainResult:
    """Stage 2: the aggregator and the identity LoRA(s), with the VAE identity references
    (``run`` as :func:`train_stage1`; 0 steps: nothing runs)."""
    if plan.stage2_steps == 0:
        return TrainResult()
    adapters = _identity_adapters(pipe)
    if not adapters:
        raise SMGError("Stage 2 trains the reference LoRA, but no encoder names an adapter; "
                       "use vae-reference with adapter='squeeze-identity' (the squeeze-tiny preset does).")
    trainable = module_parameters("aggregator", _aggregator(pipe))
    for name in adapters:
        trainable.update(pipe.backend.adapter_parameters(name))
    stage2 = SubjectPipeline(pipe.backend, pipe.encoders, pipe.aggregators, pipe.rules, None, defaults=pipe.defaults)
    trainer = FlowMatchingTrainer(stage2, trainable, dataset, plan.config(2), hooks)
    return trainer.train(resume=resume, **run)


def train_two_stage(pipe: SubjectPipeline, dataset: Sequence[TrainingSample], plan: SqueezeTrainingPlan,
                    hooks: Sequence[TrainerHook] = ()) -> tuple[TrainResult, TrainResult]:
    """Stage 1 then stage 2 on the same pipeline object (its weights are updated in place)."""
    first = train_stage1(pipe, dataset, plan, hooks)
    second = train_stage2(pipe, dataset, plan, hooks)
    return first, second
