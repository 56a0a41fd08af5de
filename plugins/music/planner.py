"""MUSIC's MLLM planner: the MLLM reads the instruction and the references and writes plans.

For each request the planner shows the MLLM every reference picture, the instruction and the
plan format (:mod:`.plan_format`), samples plans with temperature, and parses each one
strictly. A sample that does not parse (wrong grid, an id out of range, a subject with no cell,
chatter...) is never used: the planner samples again, up to ``max_attempts`` rounds, and a plan
still missing after that comes from the heuristic planner, with the reason, every parse error
and the raw samples recorded in ``plan.notes``. With the tiny preset's random Qwen2.5-VL that
fallback is what happens; a model trained with :mod:`.training` writes valid plans.

The MLLM is the core's :func:`smg_sdk.mllm.load_mllm`, so the planner shares one loaded model
with any other component that reads the same folder (Squeeze-MLLM's encoder, for instance).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from smg_sdk import Plan, Planner, Request, SMGError

from .heuristic import HeuristicPlanner
from .plan_format import PlanFormatError, parse_plan
from .prompting import SYSTEM_PROMPT, compose_prompt, planner_message

FALLBACKS = ("heuristic", "error")


class PlanningError(SMGError):
    """The MLLM wrote no valid plan and the planner was told not to fall back."""


@dataclass
class MusicPlannerConfig:
    """Settings of the ``music`` planner (all JSON values, so a saved pipeline can name them).

    ``model_path``: a local Qwen2.5-VL-class folder (default: the embedded tiny one);
    ``adapter_path``: a LoRA folder written by :func:`smg_plugins.music.training.train_planner`;
    ``max_attempts``: sampling rounds before falling back; ``fallback``: ``"heuristic"`` or
    ``"error"``; ``image_size``: side the references are resized to for the MLLM (default 64
    for the tiny model, 448 otherwise); ``cot_in_prompt``: the chain of thought joins the prompt;
    ``num_threads``: torch intra-op threads while sampling (default: 1 for the tiny model, whose
    thousands of tiny matmuls gain nothing from threads and stall badly on a shared CPU; torch's
    own setting otherwise); ``progress``: a progress bar over sampling rounds (for large models).
    """

    model_path: str | None = None
    adapter_path: str | None = None
    rows: int = 8
    cols: int = 8
    temperature: float = 0.9
    max_new_tokens: int = 320
    max_attempts: int = 3
    image_size: int | None = None
    torch_dtype: str | None = None
    device: str | None = None
    trust_remote_code: bool = False
    cot_in_prompt: bool = True
    fallback: str = "heuristic"
    system_prompt: str | None = None
    num_threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise SMGError(f"music planner fallback must be one of {', '.join(FALLBACKS)}, not {self.fallback!r}.")
        for name in ("max_attempts", "max_new_tokens", "rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SMGError(f"music planner {name} must be a positive integer, got {value!r}.")
        if not self.temperature > 0:
            raise SMGError(f"music planner temperature must be > 0, got {self.temperature!r}.")


class MusicPlanner(Planner):
    """Plans by an MLLM with retries and a heuristic fallback (registered as ``music``).

    Build it from keyword settings (:class:`MusicPlannerConfig` fields), or pass a
    :class:`MusicPlannerConfig`, and/or a loaded :class:`smg_sdk.mllm.MLLM` as ``mllm`` to share
    one model between components. Its saved options are the settings that differ from the
    defaults (a shared ``mllm`` is not an option: a reloaded planner loads ``model_path``).
    ``trust_remote_code`` is a named parameter so ``SubjectPipeline.from_pretrained(...,
    trust_remote_code=True)`` can pass the caller's consent to it (a manifest never can).
    """

    suggested_rules = ("music-layout",)
    suggested_verifier = "clip-text"
    ignore_for_config = ("config", "mllm")

    def __init__(self, config: MusicPlannerConfig | None = None, *, mllm: Any = None,
                 trust_remote_code: bool | None = None, **settings: Any):
        if trust_remote_code is not None:
            settings["trust_remote_code"] = trust_remote_code
        if config is None:
            names = {f.name for f in dataclasses.fields(MusicPlannerConfig)}
            unknown = sorted(set(settings) - names)
            if unknown:
                raise SMGError(f"Unknown music planner setting(s) {unknown}; known: {sorted(names)}.")
            config = MusicPlannerConfig(**settings)
        elif settings:
            config = dataclasses.replace(config, **settings)
        self.config = config
        self._mllm = mllm
        self.heuristic = HeuristicPlanner(rows=config.rows, cols=config.cols, cot_in_prompt=config.cot_in_prompt)
        defaults = MusicPlannerConfig()
        self.register_to_config(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                                   if getattr(config, f.name) != getattr(defaults, f.name)})

    # ------------------------------------------------------------------ the model
    @property
    def model_path(self) -> str:
        if self.config.model_path is not None:
            return str(self.config.model_path)
        from smg_sdk import tiny_qwen_vl_path

        return str(tiny_qwen_vl_path())

    @property
    def mllm(self):
        """The MLLM (loaded on first use; shared with other components unless an adapter is set)."""
        if self._mllm is None:
            from smg_sdk import load_mllm

            private = self.config.adapter_path is not None  # an adapter must not leak into a shared model
            mllm = load_mllm(
                self.model_path, torch_dtype=self.config.torch_dtype, device=self.config.device,
                trust_remote_code=self.config.trust_remote_code, reuse=not private,
            )
            if private:
                from .training import load_planner_adapter

                load_planner_adapter(mllm, self.config.adapter_path)
            self._mllm = mllm
        return self._mllm

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MusicPlanner":
        """Move (and load, if not yet loaded) the planner's MLLM; called by ``SubjectPipeline.to``."""
        self.mllm.to(device=device, dtype=dtype)
        return self

    def image_size(self) -> int:
        if self.config.image_size is not None:
            return int(self.config.image_size)
        return 64 if self.config.model_path is None else 448

    # ------------------------------------------------------------------ planning
    def sample(self, request: Request, count: int, seed: int) -> list[str]:
        """``count`` raw plan texts from the MLLM for ``request`` (one generate call)."""
        mllm = self.mllm
        inputs = mllm.build_inputs(
            planner_message(request, self.config.rows, self.config.cols),
            [s.pil() for s in request.subjects],
            image_size=self.image_size(),
            system=self.config.system_prompt or SYSTEM_PROMPT,
            add_generation_prompt=True,
        )
        threads = self.config.num_threads or (1 if self.config.model_path is None else None)
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            return mllm.generate(
                inputs,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                do_sample=True,
                seed=seed,
                num_return_sequences=count,
            )
        finally:
            torch.set_num_threads(previous)

    def plan(self, request: Request, num_plans: int, generator: torch.Generator | None = None) -> list[Plan]:
        n = len(request.subjects)
        if n == 0:
            return self.heuristic.plans(request, num_plans, generator, source="heuristic")
        cfg = self.config
        plans: list[Plan | None] = [None] * num_plans
        errors: list[list[str]] = [[] for _ in range(num_plans)]
        samples: list[list[str]] = [[] for _ in range(num_plans)]
        rounds = tqdm(range(1, cfg.max_attempts + 1), desc="planning", disable=not cfg.progress, leave=False)
        for attempt in rounds:
            pending = [i for i, p in enumerate(plans) if p is None]
            if not pending:
                break
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            texts = self.sample(request, len(pending), seed)
            for i, text in zip(pending, texts):
                try:
                    parsed = parse_plan(text, n, cfg.rows, cfg.cols)
                except PlanFormatError as exc:
                    errors[i].append(f"attempt {attempt}: {exc}")
                    samples[i].append(text[:300])
                    continue
                prompt = compose_prompt(request, parsed.cot) if cfg.cot_in_prompt else None
                plans[i] = Plan(
                    cot=parsed.cot, layout=parsed.layout, prompt=prompt,
                    notes={"source": "mllm", "attempt": attempt, "model": self.model_path, "errors": errors[i]},
                )
        missing = [i for i, p in enumerate(plans) if p is None]
        if missing and cfg.fallback == "error":
            raise PlanningError(
                f"The MLLM wrote no valid plan for {len(missing)} of {num_plans} candidates in {cfg.max_attempts} "
                f"attempts (last error: {errors[missing[0]][-1]}). Train the planner (smg_plugins.music.training) or "
                "use fallback='heuristic'."
            )
        if missing:
            fallback = self.heuristic.plans(request, len(missing), generator, source="heuristic-fallback")
            for i, plan in zip(missing, fallback):
                plan.notes.update(
                    fallback_reason=f"no valid plan from the MLLM in {cfg.max_attempts} attempts",
                    attempts=cfg.max_attempts, errors=errors[i], samples=samples[i], model=self.model_path,
                )
                plans[i] = plan
        return [p for p in plans if p is not None]


def build_music_planner(*, trust_remote_code: bool = False, **settings: Any) -> MusicPlanner:
    """A :class:`MusicPlanner` from keyword settings (kept for callers; the registry registers the class)."""
    return MusicPlanner(trust_remote_code=trust_remote_code, **settings)


__all__ = ["FALLBACKS", "MusicPlanner", "MusicPlannerConfig", "PlanningError", "build_music_planner"]
