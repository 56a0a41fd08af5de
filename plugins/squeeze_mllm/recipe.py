"""``smg train subjectworld --recipe squeeze``: Squeeze-MLLM's two-stage plan on SubjectWorld.

The ``squeeze-tiny`` composition (CLIP pooled text, the frozen tiny Qwen2.5-VL read through the
chosen aggregator, VAE identity references with the identity LoRA, the multi-stage schedule) on
a frozen tiny FLUX (``--from``, default the embedded one), trained on reference -> target pairs
of SubjectWorld training identities (``--subjects``, default 1,2) with :mod:`.training`'s plan:

- stage 1 (``--option stage1_steps=N``, default half of ``--steps``): the aggregator alone, the
  pipeline without its VAE identity references, learning rate ``--learning-rate`` (default 1e-3);
- stage 2 (the remaining steps): the aggregator and the identity LoRA (rank ``--lora-rank``,
  default 4) with the references, at half that learning rate.

The MLLM keeps its seeded random weights (the tiny Qwen2.5-VL is not pretrained): this recipe
measures what the aggregators learn from those features. Each stage checkpoints under
``OUT/checkpoints/stage1|stage2`` and a rerun with the same options continues exactly (once
stage 2 has a checkpoint, stage 1 is not revisited). Evaluation lines (every ``--eval-every``
steps, default 250, and at the end of each stage) score the whole ``squeeze-tiny`` pipeline as
it stands on ``--eval-samples`` held-out requests with 1 and 2 subjects. At the end, or at a
budget stop, ``OUT/weights/`` is written in the layout ``squeeze-tiny`` reads with its
``weights`` option: ``<aggregator>.safetensors`` and ``squeeze-identity/pytorch_lora_weights.safetensors``.
One process only (no ``accelerate launch``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from smg_sdk import RecipeOptions, RequestError, SubjectPipeline, SubjectWorld, SubjectWorldSamples, atomic_folder
from smg_sdk import get_registry, heldout_scores, is_training_output

from .preset import IDENTITY_ADAPTER, build_squeeze, tiny_backend, weight_files
from .training import SqueezeTrainingPlan, _aggregator, train_stage1, train_stage2

AGGREGATORS = ("dla", "lap", "last-layer", "fixed-layers")
"""The aggregators this recipe trains (this plugin's registered names)."""
USES = ("start_from", "steps", "batch_size", "eval_every", "pool_size", "subjects", "learning_rate",
        "subject_weight", "lora_rank", "position")
"""The :class:`~smg_sdk.RecipeOptions` fields the recipe reads; any other one set is refused."""
EVAL_METRICS = ("identity", "instruction", "omission", "copy_paste", "similarity")
DEFAULTS = {"steps": 1000, "batch_size": 4, "learning_rate": 1e-3, "lora_rank": 4, "pool_size": 4096,
            "eval_every": 250, "checkpoint_every": 100}


def squeeze_recipe(options: RecipeOptions, log: Callable[[str], None] = print, *, aggregator: str = "dla",
                   stage1_steps: int | None = None) -> Path:
    """Squeeze-MLLM: the aggregator, then + the identity LoRA, on a frozen base and MLLM; writes OUT/weights/.

    ``aggregator``: one of :data:`AGGREGATORS`; ``stage1_steps``: stage 1's share of ``steps``
    (default half). Returns the weights folder. Raises :class:`~smg_sdk.RequestError` for a bad
    option or one this recipe does not use.
    """
    options.refuse_unused("squeeze", USES)
    plan = training_plan(options, aggregator, stage1_steps)
    world = SubjectWorld("train", "reference", options.seed, subjects=options.subjects or (1, 2))
    data = SubjectWorldSamples(world, options.pool_size or DEFAULTS["pool_size"], options.subject_weight,
                               seed=options.seed)
    plan.data = data.settings
    pipe = training_pipeline(options, aggregator)
    _train(pipe, data, plan, options, log)
    return write_weights(pipe, aggregator, Path(options.out) / "weights")


def training_plan(options: RecipeOptions, aggregator: str, stage1_steps: int | None) -> SqueezeTrainingPlan:
    """The two-stage plan of ``options`` (checkpoints under ``OUT/checkpoints``); checks the recipe's options."""
    if aggregator not in AGGREGATORS:
        raise RequestError(f"--option aggregator must be one of {', '.join(AGGREGATORS)}; got {aggregator!r}.")
    steps = options.steps or DEFAULTS["steps"]
    first = steps // 2 if stage1_steps is None else stage1_steps
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= steps:
        raise RequestError(f"--option stage1_steps must be a whole number from 0 to --steps ({steps}); got {first!r}.")
    rate = options.learning_rate or DEFAULTS["learning_rate"]
    return SqueezeTrainingPlan(str(Path(options.out) / "checkpoints"), stage1_steps=first, stage2_steps=steps - first,
                               stage1_lr=rate, stage2_lr=rate / 2, batch_size=options.batch_size or DEFAULTS["batch_size"],
                               height=128, width=128, seed=options.seed, checkpoint_every=DEFAULTS["checkpoint_every"],
                               progress=options.progress, guidance_scale=3.5)


def training_pipeline(options: RecipeOptions, aggregator: str) -> SubjectPipeline:
    """``squeeze-tiny``'s composition on ``--from`` with seeded initial aggregator and identity LoRA."""
    backend, defaults = tiny_backend(options.start_from)
    mllm_encoder = get_registry().build("encoder", "squeeze-mllm", model="tiny", layer_stride=3, image_size=64)
    return build_squeeze(backend, mllm_encoder, aggregator=aggregator, lora_file=None, weights_file=None,
                         rank=options.lora_rank or DEFAULTS["lora_rank"], reference_mode="cached",
                         position=options.position or "omini", defaults=defaults)


def _evaluator(pipe: SubjectPipeline, options: RecipeOptions, stage: int):
    if not options.eval_samples:
        return None
    return lambda step: {"stage": stage, **heldout_scores(pipe, (1, 2), options.eval_samples, seed=1,
                                                          metrics=EVAL_METRICS)}


def _train(pipe: SubjectPipeline, data, plan: SqueezeTrainingPlan, options: RecipeOptions,
           log: Callable[[str], None]) -> None:
    """Stage 1 (unless stage 2 already began), then stage 2 within what is left of the budget."""
    began, budget = time.monotonic(), options.budget_minutes
    run = {"eval_every": options.eval_every or DEFAULTS["eval_every"], "log": log,
           "history_file": str(Path(options.out) / "history.json")}
    stage2 = Path(plan.output_dir) / "stage2"
    if not (stage2.is_dir() and is_training_output(stage2)):
        first = train_stage1(pipe, data, plan, budget_minutes=budget, evaluate=_evaluator(pipe, options, 1), **run)
        if first.last_step < plan.stage1_steps:  # stopped by the budget; a rerun with --resume continues
            return
    left = None if budget is None else round(budget - (time.monotonic() - began) / 60, 2)  # minutes, as logged
    if left is not None and left <= 0:
        log(f"squeeze: budget of {budget} minutes reached at the end of stage 1; run again with --resume for stage 2")
        return
    train_stage2(pipe, data, plan, budget_minutes=left, evaluate=_evaluator(pipe, options, 2), **run)


def write_weights(pipe: SubjectPipeline, aggregator: str, folder: Path) -> Path:
    """``folder/<aggregator>.safetensors`` (the aggregator's state dict) and the identity LoRA
    (``folder/squeeze-identity/pytorch_lora_weights.safetensors``), atomically; returns ``folder``."""
    from safetensors.torch import save_file

    with atomic_folder(folder, kind="squeeze-weights") as staging:
        aggregator_file, lora_file = weight_files(staging, aggregator)
        state = {k: v.detach().contiguous() for k, v in _aggregator(pipe).state_dict().items()}
        save_file(state, str(aggregator_file))
        pipe.backend.save_adapter(IDENTITY_ADAPTER, lora_file.parent)
    return folder


__all__ = ["AGGREGATORS", "squeeze_recipe", "training_pipeline", "training_plan", "write_weights"]
