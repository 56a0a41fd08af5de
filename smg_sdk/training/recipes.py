"""SubjectWorld training recipes: what ``smg train subjectworld --recipe NAME`` runs.

A recipe is registered by a plugin under the registry kind ``"recipe"``
(``registry.add_recipe(name, factory)``); the core's own plugin registers the tiny FLUX's
``vae``, ``base`` and ``reference-lora`` (:mod:`smg_sdk.backends.flux.recipes`), and
Squeeze-MLLM registers ``squeeze``. The contract of a factory::

    def my_recipe(options: RecipeOptions, log: Callable[[str], None] = print, *, my_option=...) -> Path:
        '''One line shown by `smg train subjectworld --help`.'''

It trains into ``options.out`` (resumable: a rerun with the same options continues exactly),
prints its evaluation lines through ``log`` and returns what it wrote. Its keyword-only
parameters are its own options, set on the command line with ``--option KEY=VALUE``
(:func:`run_recipe` refuses any other key with a one-line error listing them).

:class:`SubjectWorldSamples` is the training data most recipes share: SubjectWorld reference
-> target pairs of training identities as :class:`~smg_sdk.training.TrainingSample` objects.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import RequestError

RECIPE_KIND = "recipe"
"""The registry kind recipes are registered under."""


@dataclass
class RecipeOptions:
    """What ``smg train subjectworld`` passes to every recipe (None: the recipe's default).

    ``out``: the run folder (checkpoints, ``history.json``, the result); ``start_from``: the
    model folder to start from (``--from``); ``budget_minutes``: stop after this much wall time
    (with a checkpoint; a rerun continues); ``eval_samples``: held-out requests per subject
    count in each evaluation line (0: none); ``subjects``: subject counts of the training
    scenes. The rest are hyper-parameters a recipe may use; one a recipe does not use may be
    refused by it (:meth:`refuse_unused`).
    """

    out: str
    start_from: str | None = None
    vae: str | None = None
    budget_minutes: float | None = None
    steps: int | None = None
    batch_size: int | None = None
    seed: int = 0
    eval_samples: int = 8
    eval_every: int | None = None
    progress: bool = True
    pool_size: int | None = None
    subjects: tuple[int, ...] | None = None
    learning_rate: float | None = None
    lr_schedule: str | None = None
    subject_weight: float | None = None
    describe: float | None = None
    caption_dropout: float | None = None
    lora_rank: int | None = None
    position: str | None = None

    def refuse_unused(self, recipe: str, uses: Sequence[str]) -> None:
        """Raise :class:`~smg_sdk.RequestError` naming the first hyper-parameter set (not None)
        that ``recipe`` does not use; ``uses`` lists the field names it reads."""
        always = {"out", "seed", "eval_samples", "progress", "budget_minutes"}
        for field in dataclasses.fields(self):
            if field.name not in always and field.name not in uses and getattr(self, field.name) is not None:
                flag = "--from" if field.name == "start_from" else "--" + field.name.replace("_", "-")
                raise RequestError(f"{flag} does not apply to the {recipe!r} recipe; it uses "
                                   f"{', '.join(sorted(uses))}.")


def recipe_option_names(factory: Callable[..., Any]) -> list[str]:
    """A recipe factory's own options: its keyword-only parameters, in order."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def describe_recipes() -> list[str]:
    """One line per registered recipe: name, its plugin, the first line of its docstring, its options."""
    from ..plugins.manager import get_registry

    registry, lines = get_registry(), []
    for name in registry.names(RECIPE_KIND):
        factory = registry.get(RECIPE_KIND, name)
        summary = (inspect.getdoc(factory) or "").split("\n", 1)[0]
        options = recipe_option_names(factory)
        extra = f" (--option {', '.join(options)})" if options else ""
        lines.append(f"{name} [{registry.owner(RECIPE_KIND, name)}]: {summary}{extra}")
    return lines


def recipe_factory(name: str, recipe_options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The factory of the registered recipe ``name``, after checking ``recipe_options``' keys.

    Raises :class:`~smg_sdk.RegistryError` for an unknown name (listing the known ones) and
    :class:`~smg_sdk.RequestError` for an option the recipe does not take (listing its options).
    """
    from ..plugins.manager import get_registry

    factory = get_registry().get(RECIPE_KIND, name)
    accepted = recipe_option_names(factory)
    unknown = sorted(set(recipe_options or {}) - set(accepted))
    if unknown:
        raise RequestError(f"--option {unknown[0]}: the {name!r} recipe has no such option; its options are: "
                           f"{', '.join(accepted) or '(none)'}.")
    return factory


def run_recipe(name: str, options: RecipeOptions, log: Callable[[str], None] = print,
               **recipe_options: Any) -> Path:
    """Run the registered recipe ``name`` with ``options`` and its own ``recipe_options``; returns
    what it wrote. Raises as :func:`recipe_factory`, and whatever the recipe raises."""
    return recipe_factory(name, recipe_options)(options, log, **recipe_options)


WORLD_SETTINGS = ("split", "kind", "seed", "subjects", "side", "references", "prior", "describe")
"""The :class:`~smg_sdk.SubjectWorld` fields that decide its draws, as :attr:`SubjectWorldSamples.settings` records them."""


class SubjectWorldSamples(Sequence):
    """A sequence view of a :class:`~smg_sdk.SubjectWorld` as TrainingSamples (rendered on access).

    ``world[i].training_sample()`` for ``i < length``. With ``subject_weight`` W, a sample's loss
    weighs the tokens of its subjects' layout cells ``1 + W`` and the rest 1 (the layout is
    SubjectWorld's exact 8 x 8 grid of subject ids; ``TrainingSample.loss_weights``). With
    ``caption_dropout`` p, a share p of the samples (chosen by index and seed, so always the
    same ones) keep their references and have the empty prompt: the branch true CFG subtracts.
    """

    def __init__(self, world, length: int, subject_weight: float | None = None, caption_dropout: float = 0.0,
                 seed: int = 0):
        self.world, self.length, self.subject_weight = world, length, subject_weight
        self.caption_dropout, self.seed = caption_dropout, seed

    def __len__(self) -> int:
        return self.length

    @property
    def settings(self) -> dict[str, Any]:
        """What these samples are, for a run's resume check (:attr:`~smg_sdk.TrainerConfig.data`):
        the world's draw settings, the length, the subject weight and the prompt dropout."""
        world = {name: getattr(self.world, name) for name in WORLD_SETTINGS}
        world["subjects"] = list(world["subjects"])
        if getattr(self.world, "identities", "split") != "split":  # recorded only when set, so runs recorded
            world["identities"] = self.world.identities            # before the aligned set existed still resume
        return {"world": world, "length": self.length, "subject_weight": self.subject_weight or 0.0,
                "caption_dropout": self.caption_dropout or 0.0, "seed": self.seed}

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} of {self.length}")
        sample = self.world[index].training_sample()
        if self.subject_weight:
            weights = 1.0 + self.subject_weight * (np.asarray(sample.extras["layout"]) > 0)
            sample = dataclasses.replace(sample, loss_weights=weights)
        if self.caption_dropout and np.random.default_rng([self.seed, index, 11]).random() < self.caption_dropout:
            sample = dataclasses.replace(sample, prompt="")
        return sample


__all__ = ["RECIPE_KIND", "RecipeOptions", "SubjectWorldSamples", "describe_recipes", "recipe_factory",
           "recipe_option_names", "run_recipe"]
