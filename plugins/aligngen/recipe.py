"""``smg train subjectworld --recipe aligngen``: AlignGen's S*, DEM and reference LoRA on SubjectWorld.

The ``aligngen-tiny`` composition on a frozen tiny FLUX (``--from``, default the embedded one),
trained with this plugin's :func:`~.training.aligngen_trainer` and
:class:`~.training.AlignGenTrainingStrategy` hooks (reference dropout, concept substitution) on
reference -> target pairs of SubjectWorld training identities (``--subjects``, default 1,2;
``SubjectWorldSamples``). Concept substitution uses the plugin's hierarchy extended with
SubjectWorld's class words (:func:`shape_hierarchy`: each shape -> ``shape`` -> ``object``), so
"a <1>" with class word "star" is trained half of the time as "shape" or "object".

Its own options (``--option KEY=VALUE``): ``sstar_dem`` (default true; false is the ablation
baseline: the same pipeline and training without S* and the DEM, only the reference LoRA
trains), ``mask`` (default true; false trains and samples without the ``aligngen-mask`` rule),
``reference_dropout`` and ``substitution`` (the strategy's rates, default 0.5 each). The
shared options it uses are :data:`USES`; any other one set is refused in one line.

Checkpoints go to ``OUT/checkpoints`` (a rerun with ``--resume`` continues exactly; each
checkpoint records what the samples are and the recipe's own options as
:attr:`~smg_sdk.TrainerConfig.data`, so a rerun with others is refused, the differences
listed). Evaluation lines (every ``--eval-every`` steps, default 250, and at the end) score the whole pipeline as it
stands on ``--eval-samples`` held-out requests with 1 and 2 subjects (the misaligned set:
``identity``, ``instruction``, ``omission``, ``copy_paste``, ``similarity``) and on the aligned
set (``aligned_identity``, ``aligned_similarity``). At the end, or at a budget stop,
``OUT/weights/`` is written atomically in the layout ``aligngen-tiny`` reads with its
``weights`` option (:mod:`.weights`). One process only (no ``accelerate launch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from smg_sdk import (
    SHAPES,
    RecipeOptions,
    RequestError,
    SubjectPipeline,
    SubjectWorld,
    SubjectWorldSamples,
    TrainerConfig,
    heldout_scores,
)

from .preset import AlignGenConfig, tiny_pipeline
from .training import AlignGenTrainingStrategy, aligngen_trainer
from .weights import sstar_and_dem, write_weights

USES = ("start_from", "steps", "batch_size", "eval_every", "pool_size", "subjects", "learning_rate",
        "subject_weight", "lora_rank")
"""The :class:`~smg_sdk.RecipeOptions` fields the recipe reads; any other one set is refused."""
EVAL_METRICS = ("identity", "instruction", "omission", "copy_paste", "similarity")
ALIGNED_METRICS = ("identity", "similarity")
DEFAULTS = {"steps": 1000, "batch_size": 4, "learning_rate": 1e-3, "lora_rank": 16, "pool_size": 4096,
            "eval_every": 250, "checkpoint_every": 100}


def shape_hierarchy() -> dict[str, str]:
    """SubjectWorld's class words in AlignGen's concept hierarchy: each shape -> ``shape`` -> ``object``."""
    return {**{shape: "shape" for shape in SHAPES}, "shape": "object"}


def aligngen_recipe(options: RecipeOptions, log: Callable[[str], None] = print, *, sstar_dem: bool = True,
                    mask: bool = True, reference_dropout: float = 0.5, substitution: float = 0.5) -> Path:
    """AlignGen: S*, the DEM and the reference LoRA (sstar_dem=false: the LoRA alone) on a frozen base; writes OUT/weights/.

    Returns the weights folder. Raises :class:`~smg_sdk.RequestError` for a bad option or one this
    recipe does not use, and :class:`~smg_sdk.ConfigError` when ``options.out`` holds a run with
    other settings (recipe options included).
    """
    options.refuse_unused("aligngen", USES)
    settings = check_settings(sstar_dem, mask, reference_dropout, substitution)
    world = SubjectWorld("train", "reference", options.seed, subjects=options.subjects or (1, 2))
    data = SubjectWorldSamples(world, options.pool_size or DEFAULTS["pool_size"], options.subject_weight,
                               seed=options.seed)
    pipe = training_pipeline(options, sstar_dem, mask)
    strategy = AlignGenTrainingStrategy(reference_dropout, substitution=substitution, extra_parents=shape_hierarchy())
    config = trainer_config(options, {**data.settings, "aligngen": settings})
    trainer = aligngen_trainer(pipe, data, config, strategy)
    trainer.train(resume=True, budget_minutes=options.budget_minutes, evaluate=_evaluator(pipe, options),
                  eval_every=options.eval_every or DEFAULTS["eval_every"], log=log,
                  history_file=str(Path(options.out) / "history.json"))
    return write_weights(pipe, Path(options.out) / "weights", mask=mask)


def check_settings(sstar_dem: object, mask: object, reference_dropout: object, substitution: object) -> dict:
    """The recipe's own options, checked (:class:`~smg_sdk.RequestError` naming the bad one)."""
    for name, value in (("sstar_dem", sstar_dem), ("mask", mask)):
        if not isinstance(value, bool):
            raise RequestError(f"--option {name} must be true or false, got {value!r}.")
    for name, value in (("reference_dropout", reference_dropout), ("substitution", substitution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise RequestError(f"--option {name} must be a probability in [0, 1] (e.g. 0.5), got {value!r}.")
    return {"sstar_dem": sstar_dem, "mask": mask, "reference_dropout": float(reference_dropout),
            "substitution": float(substitution)}


def trainer_config(options: RecipeOptions, data: dict | None = None) -> TrainerConfig:
    """Trainer settings of ``options`` (checkpoints under ``OUT/checkpoints``, 128 px, guidance 3.5 as
    sampled); ``data``: what the run's samples and recipe options are, checked on resume."""
    return TrainerConfig(output_dir=str(Path(options.out) / "checkpoints"), max_steps=options.steps or DEFAULTS["steps"],
                         learning_rate=options.learning_rate or DEFAULTS["learning_rate"],
                         batch_size=options.batch_size or DEFAULTS["batch_size"], seed=options.seed, height=128,
                         width=128, guidance_scale=3.5, checkpoint_every=DEFAULTS["checkpoint_every"],
                         progress=options.progress, data=dict(data or {}))


def training_pipeline(options: RecipeOptions, sstar_dem: bool, mask: bool) -> SubjectPipeline:
    """``aligngen-tiny``'s composition of the variant on ``--from`` with seeded initial S*, DEM and a zero
    reference LoRA (rank ``--lora-rank``, default 16); S* is set from its init word now, so a
    checkpoint restored into it is not overwritten by the first encoding."""
    config = AlignGenConfig(sstar_dem=sstar_dem, mask=mask, rank=options.lora_rank or DEFAULTS["lora_rank"])
    pipe = tiny_pipeline(config, None, options.start_from, seed=options.seed)
    parts = sstar_and_dem(pipe)
    if parts is not None:
        parts[0].ensure_initialized(pipe.backend)
    return pipe


def _evaluator(pipe: SubjectPipeline, options: RecipeOptions):
    if not options.eval_samples:
        return None

    def evaluate(step: int) -> dict[str, float]:
        scores = heldout_scores(pipe, (1, 2), options.eval_samples, seed=1, metrics=EVAL_METRICS)
        aligned = heldout_scores(pipe, (1, 2), options.eval_samples, seed=1, metrics=ALIGNED_METRICS, aligned=True)
        return {**scores, **{f"aligned_{k}": v for k, v in aligned.items()}}

    return evaluate


__all__ = ["USES", "aligngen_recipe", "check_settings", "shape_hierarchy", "trainer_config", "training_pipeline"]
