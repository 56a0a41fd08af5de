"""MUSIC's MLLM planner: the MLLM reads the instruction and the references and writes plans.

For each request the planner shows the MLLM every reference picture, the instruction and the
plan format (:mod:`.plan_format`), samples plans with temperature, and parses each one
strictly. A sample that does not parse (wrong grid, an id out of range, a subject with no cell,
chatter...) is never used: the planner samples again, up to ``max_attempts`` rounds, and a plan
still missing after that comes from the heuristic planner, with the reason, every parse error
and the raw samples recorded in ``plan.notes``. With the tiny preset's random Qwen2.5-VL that
fallback is what happens; a model trained with :mod:`.training` writes valid plans.

**Cost.** The ``N`` candidates of a round are sampled in one batched ``generate`` call (KV cache
on), and each sequence stops as soon as it is done or lost: at the stop string ``</layout>``
(the end of the layout block), or as soon as its text can no longer become a valid plan
(:func:`.plan_format.prefix_problem`: chatter before ``<cot>``, a word in the grid...), so a
sample the parser would reject costs the tokens up to its first mistake, not the whole budget.
The budget (``max_new_tokens``, default derived from the format) is ``max_cot_tokens`` plus the
tokens of the longest layout block the format allows for the request's subject count. The call
ends when every sequence has stopped.

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
COT_TOKENS_PER_SUBJECT, COT_TOKENS_BASE = 48, 32
"""The default chain-of-thought budget: ``48 * subjects + 32`` tokens (see ``max_cot_tokens``)."""


class PlanningError(SMGError):
    """The MLLM wrote no valid plan and the planner was told not to fall back."""


@dataclass
class MusicPlannerConfig:
    """Settings of the ``music`` planner (all JSON values, so a saved pipeline can name them).

    ``model_path``: a local Qwen2.5-VL-class folder (default: the embedded tiny one);
    ``adapter_path``: a LoRA folder written by :func:`smg_plugins.music.training.train_planner`;
    ``max_attempts``: sampling rounds before falling back; ``max_new_tokens``: tokens per sample
    (None: ``max_cot_tokens`` + the longest layout block, counted with the model's tokenizer);
    ``max_cot_tokens``: tokens allowed for the chain of thought (None: 48 per subject + 32; the
    composed training data's CoTs take at most 63, 100, 136, 172, 205 tokens for 2..6 subjects);
    ``stop_early``: stop each sample at ``</layout>`` or at its first format mistake (False: every
    sample runs to the budget, e.g. to record whole outputs); ``fallback``: ``"heuristic"`` or
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
    max_new_tokens: int | None = None
    max_cot_tokens: int | None = None
    stop_early: bool = True
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
        for name in ("max_attempts", "max_new_tokens", "max_cot_tokens", "rows", "cols"):
            value = getattr(self, name)
            if name in ("max_new_tokens", "max_cot_tokens") and value is None:
                continue
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
        self.stop_reasons: list[str | None] = []
        """Why each sample of the last round stopped early (None: it did not); see :meth:`sample`."""
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
    def token_budget(self, num_subjects: int) -> int:
        """New tokens per sample: ``max_new_tokens``, or the CoT budget + the longest layout block.

        The longest block is the format's frame (``<cot>``, ``</cot>``, ``<layout>``, ``</layout>``)
        around a ``rows x cols`` grid filled with the id that tokenizes longest (0..num_subjects).
        """
        if self.config.max_new_tokens is not None:
            return self.config.max_new_tokens
        rows, cols = self.config.rows, self.config.cols
        count = lambda text: len(self.mllm.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        grids = ("\n".join([" ".join([str(k)] * cols)] * rows) for k in range(num_subjects + 1))
        frame = max(count(f"<cot>\n\n</cot>\n<layout>\n{grid}\n</layout>") for grid in grids)
        cot = self.config.max_cot_tokens
        return (COT_TOKENS_PER_SUBJECT * num_subjects + COT_TOKENS_BASE if cot is None else cot) + frame

    def sample(self, request: Request, count: int, seed: int) -> list[str]:
        """``count`` raw plan texts from the MLLM for ``request`` (one batched generate call).

        Each text ends at ``</layout>``, at its first departure from the format (the reason is in
        ``self.stop_reasons``, one entry per text, None where it did not happen) or at the budget.
        """
        return self._generate([request], seed, count=count)

    def sample_requests(self, requests: list[Request], seed: int, temperature: float | None = None) -> list[str]:
        """One raw first-round plan text per request, all in one ``generate`` call (prompts left-padded).

        Same prompt, budget (the largest subject count's), early stop and temperature (unless
        given) as :meth:`sample`; used to measure planners on many requests
        (:mod:`smg_plugins.music.planner_eval`).
        """
        if not requests:
            raise SMGError("sample_requests needs at least one request.")
        return self._generate(list(requests), seed, temperature=temperature)

    def _generate(self, requests: list[Request], seed: int, count: int = 1, temperature: float | None = None) -> list[str]:
        mllm, cfg = self.mllm, self.config
        parts = [mllm.build_inputs(planner_message(r, cfg.rows, cfg.cols), [s.pil() for s in r.subjects],
                                   image_size=self.image_size(), system=cfg.system_prompt or SYSTEM_PROMPT,
                                   add_generation_prompt=True) for r in requests]
        pad = mllm.tokenizer.pad_token_id if mllm.tokenizer.pad_token_id is not None else mllm.tokenizer.eos_token_id
        inputs = parts[0] if len(parts) == 1 else dataclasses.replace(parts[0], tensors=left_padded(parts, int(pad)))
        threads = cfg.num_threads or (1 if cfg.model_path is None else None)
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        from transformers import StoppingCriteriaList  # here: registering the plugin must not import transformers

        from .stopping import FormatWatch

        counts = [len(r.subjects) for r in requests]
        watch = FormatWatch(mllm.tokenizer, inputs.tensors["input_ids"].shape[-1],
                            counts[0] if len(counts) == 1 else counts, cfg.rows, cfg.cols)
        stops = {"stop_strings": ["</layout>"], "tokenizer": mllm.tokenizer,
                 "stopping_criteria": StoppingCriteriaList([watch])} if cfg.stop_early else {}
        try:
            texts = mllm.generate(
                inputs, max_new_tokens=self.token_budget(max(counts)), temperature=temperature or cfg.temperature,
                do_sample=True, seed=seed, num_return_sequences=count, use_cache=True, pad_token_id=int(pad), **stops,
            )
        finally:
            torch.set_num_threads(previous)
        self.stop_reasons = watch.reasons
        return texts

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
            self.stop_reasons = []
            texts = self.sample(request, len(pending), seed)
            reasons = list(self.stop_reasons) + [None] * len(texts)
            for i, text, reason in zip(pending, texts, reasons):
                try:
                    parsed = parse_plan(text, n, cfg.rows, cfg.cols)
                except PlanFormatError as exc:
                    stopped = f" (sampling stopped early: {reason})" if reason else ""
                    errors[i].append(f"attempt {attempt}: {exc}{stopped}")
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


def left_padded(parts: list[Any], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch from single-request processor outputs (:class:`smg_sdk.mllm.ChatInputs` s): per-token
    tensors ``(1, L_i)`` left-padded to ``(B, max L)`` (``pad_id`` in ``input_ids``, 0 elsewhere, so
    the attention mask hides the padding); image tensors (``pixel_values`` ``(patches, dim)``,
    ``image_grid_thw`` ``(images, 3)``) concatenated in request order, as the processor batches them."""
    lengths = [p.tensors["input_ids"].shape[1] for p in parts]
    longest = max(lengths)
    batch: dict[str, torch.Tensor] = {}
    for key, first in parts[0].tensors.items():
        values = [p.tensors[key] for p in parts]
        if torch.is_tensor(first) and first.ndim == 2 and first.shape == (1, lengths[0]):
            fill = pad_id if key == "input_ids" else 0
            batch[key] = torch.cat([torch.cat([v.new_full((1, longest - n), fill), v], dim=1)
                                    for v, n in zip(values, lengths)])
        else:
            batch[key] = torch.cat(values)
    return batch


def build_music_planner(*, trust_remote_code: bool = False, **settings: Any) -> MusicPlanner:
    """A :class:`MusicPlanner` from keyword settings (kept for callers; the registry registers the class)."""
    return MusicPlanner(trust_remote_code=trust_remote_code, **settings)


__all__ = ["FALLBACKS", "MusicPlanner", "MusicPlannerConfig", "PlanningError", "build_music_planner", "left_padded"]
