"""User-facing value types: subjects, requests, plans and pipeline outputs."""

from __future__ import annotations

import copy
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .errors import PlanError, RequestError
from .plans import as_layout, layout_image, layout_text

ImageLike = Union[Image.Image, torch.Tensor]
"""What a subject image may be (file paths and numpy arrays are accepted too)."""

PLACEHOLDER = re.compile(r"<(\d+)>")
"""Subject placeholders in prompts: ``<1>`` is the first subject, ``<2>`` the second..."""


@dataclass
class Subject:
    """One reference subject: an image plus, optionally, the word naming its class.

    ``image`` is a PIL image (any mode or bit depth), an image file path, a ``(C, H, W)``
    tensor (C = 1 or 3) or an ``(H, W[, C])`` numpy array; tensors and arrays hold ``uint8``
    0..255 or float 0..1 values. It is checked and decoded here, once, by
    :func:`smg_sdk.images.load_image` (EXIF orientation applied, transparency composited on
    white), so an unusable image raises :class:`RequestError` at construction.
    ``class_word`` ("dog", "backpack") replaces the subject's placeholder in the prompt text
    seen by text encoders. ``index`` is the subject's 0-based position in the request; it is
    filled in by :class:`Request`.
    """

    image: Any
    class_word: str | None = None
    index: int | None = None
    _rgb: Image.Image | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .images import load_image

        self._rgb = load_image(self.image, "Subject.image")
        word = self.class_word
        if word is not None and (not isinstance(word, str) or not word.strip() or not _encodable(word)):
            raise RequestError(
                f"Subject.class_word must be a non-empty string of valid text such as 'dog', or None; got {word!r}."
            )

    def pil(self) -> Image.Image:
        """The image as an 8-bit RGB PIL image (a copy: changing it does not change the subject)."""
        assert self._rgb is not None
        return self._rgb.copy()


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates), so tokenizers can read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def placeholders_in(prompt: str) -> list[int]:
    """The subject numbers named in ``prompt`` (``"<2> and <1>"`` -> ``[2, 1]``), in order."""
    return [int(m) for m in PLACEHOLDER.findall(prompt)]


MAX_SIDE = 4096
"""Largest height or width in pixels (FLUX's RoPE and VAE work at any size; this bounds memory)."""
MAX_PIXELS = 4 * 1024 * 1024
"""Largest height x width: 4 MP, twice FLUX.1's largest training resolution (2 MP); 16,384 image tokens."""
MAX_STEPS = 1000
"""Most denoising steps: FLUX's scheduler has 1,000 training timesteps."""
MAX_BATCH = 64
"""Most images per call (``num_images_per_prompt`` x candidates)."""
MAX_SUBJECTS = 16
"""Most reference subjects in one request."""
MAX_GUIDANCE = 1000.0
"""Largest guidance / true-CFG scale (well inside float16/bfloat16 range)."""
MAX_PROMPT_CHARS = 20_000
"""Longest prompt in characters (T5 reads at most 512 tokens; longer text would be truncated anyway)."""


def as_int(value: Any, name: str, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as a Python int in ``[low, high]`` (numpy integers accepted; bools refused).

    Raises :class:`RequestError` naming ``name`` otherwise.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise RequestError(f"{name} must be an integer{hint}, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise RequestError(f"{name} must be {bound}{hint}, got {value}.")
    return value


def as_float(value: Any, name: str, low: float, high: float) -> float:
    """``value`` as a finite float in ``[low, high]`` (numpy numbers accepted; bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise RequestError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise RequestError(f"{name} must be a finite number between {low:g} and {high:g}, got {value!r}.")
    return number


def check_text(value: Any, name: str, allow_empty: bool = False) -> str:
    """``value`` as prompt text: a string of valid Unicode, at most :data:`MAX_PROMPT_CHARS` long."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise RequestError(f"{name} must be a non-empty string, got {value!r}.")
    if not _encodable(value):
        raise RequestError(f"{name} holds invalid Unicode (a lone surrogate); pass text that encodes as UTF-8.")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(f"{name} has {len(value):,} characters, more than {MAX_PROMPT_CHARS:,}; shorten it.")
    return value


@dataclass
class Request:
    """Everything one generation call needs, validated on construction.

    Placeholders ``<k>`` in the prompt refer to ``subjects[k-1]``. If the prompt has any
    placeholder it must name every subject, and only subjects that exist. Caps (module
    constants): sides <= :data:`MAX_SIDE` and area <= :data:`MAX_PIXELS`, steps <=
    :data:`MAX_STEPS`, ``num_images_per_prompt`` <= :data:`MAX_BATCH`, at most
    :data:`MAX_SUBJECTS` subjects, guidance <= :data:`MAX_GUIDANCE`, prompts <=
    :data:`MAX_PROMPT_CHARS` characters. ``negative_prompt`` may be ``""`` (as in diffusers).
    ``negative_references``: whether true CFG's negative branch keeps the references (True, as
    FluxKontextPipeline keeps its image) or drops them (False, as diffusers' IP-Adapter guidance
    uses a blank image), so the guidance also pushes toward the references.
    Every problem raises :class:`RequestError` naming the argument.
    """

    prompt: str
    subjects: list[Subject] = field(default_factory=list)
    height: int = 512
    width: int = 512
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    generator: torch.Generator | None = None
    seed: int | None = None
    num_images_per_prompt: int = 1
    negative_prompt: str | None = None
    true_cfg_scale: float = 1.0
    size_multiple: int = 16
    negative_references: bool = True

    def __post_init__(self) -> None:
        check_text(self.prompt, "prompt")
        self._check_subjects()
        self._check_sizes()
        self.num_inference_steps = as_int(self.num_inference_steps, "num_inference_steps", 1, MAX_STEPS)
        self.num_images_per_prompt = as_int(self.num_images_per_prompt, "num_images_per_prompt", 1, MAX_BATCH)
        for name in ("guidance_scale", "true_cfg_scale"):
            setattr(self, name, as_float(getattr(self, name), name, 0.0, MAX_GUIDANCE))
        self._check_randomness()
        if self.negative_prompt is not None:
            check_text(self.negative_prompt, "negative_prompt", allow_empty=True)
        if not isinstance(self.negative_references, bool):
            raise RequestError(f"negative_references must be True or False, got {self.negative_references!r}.")
        self._check_placeholders()
        for i, subject in enumerate(self.subjects):
            subject.index = i

    def _check_subjects(self) -> None:
        if not isinstance(self.subjects, (list, tuple)):
            raise RequestError(
                f"subjects must be a list of Subject objects, got a {type(self.subjects).__name__}; "
                "wrap images as [Subject(image, 'class word')]."
            )
        self.subjects = list(self.subjects)
        if len(self.subjects) > MAX_SUBJECTS:
            raise RequestError(f"subjects has {len(self.subjects)} entries; at most {MAX_SUBJECTS} are supported.")
        for i, subject in enumerate(self.subjects):
            if not isinstance(subject, Subject):
                raise RequestError(
                    f"subjects[{i}] is a {type(subject).__name__}; wrap images as Subject(image, 'class word')."
                )

    def _check_sizes(self) -> None:
        m = self.size_multiple = as_int(self.size_multiple, "size_multiple", 1, 1024, " such as 16")
        for name in ("height", "width"):
            value = as_int(getattr(self, name), name, 1, MAX_SIDE, f" (a multiple of {m})")
            setattr(self, name, value)
            if value % m:
                lower = max(m, value - value % m)
                upper = lower + m if lower + m <= MAX_SIDE else lower
                raise RequestError(f"{name}={value} is not a multiple of {m}; use {lower} or {upper}.")
        if self.height * self.width > MAX_PIXELS:
            raise RequestError(
                f"height x width = {self.height}x{self.width} is {self.height * self.width:,} pixels, more than the "
                f"{MAX_PIXELS:,} supported; lower height or width."
            )

    def _check_randomness(self) -> None:
        if self.seed is not None and self.generator is not None:
            raise RequestError("Pass either seed or generator, not both.")
        if self.seed is not None:
            self.seed = as_int(self.seed, "seed", -(2**63), 2**64 - 1, " (torch.Generator.manual_seed takes 64 bits)")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise RequestError(f"generator must be a torch.Generator, got a {type(self.generator).__name__}.")

    def negative(self) -> "Request":
        """This request with the negative prompt as its prompt (which may be ``""``), for true CFG."""
        other = copy.copy(self)
        other.prompt = self.negative_prompt if self.negative_prompt is not None else ""
        if not self.negative_references:
            other.subjects = []
        return other

    def _check_placeholders(self) -> None:
        n = len(self.subjects)
        in_negative = n if self.negative_references else 0
        wrong = sorted({k for k in placeholders_in(self.negative_prompt or "") if k < 1 or k > in_negative})
        if wrong:
            raise RequestError(
                f"negative_prompt names subject(s) {', '.join(f'<{k}>' for k in wrong)} but {in_negative} subject(s) "
                "are in the negative branch" + ("" if self.negative_references else " (negative_references=False)")
                + "; name only subjects that exist there."
            )
        named = placeholders_in(self.prompt)
        if not named:
            return
        wrong = sorted({k for k in named if k < 1 or k > n})
        if wrong:
            have = f"<1>..<{n}>" if n else "no placeholders (no subjects were given)"
            raise RequestError(
                f"The prompt names subject(s) {', '.join(f'<{k}>' for k in wrong)} but {n} subject(s) were "
                f"given; use {have} or pass more subjects."
            )
        missing = sorted(set(range(1, n + 1)) - set(named))
        if missing:
            raise RequestError(
                f"The prompt uses placeholders but never names {', '.join(f'<{k}>' for k in missing)}; "
                "mention every subject once or drop the placeholders."
            )

    @property
    def text_prompt(self) -> str:
        """The prompt as text encoders see it: each ``<k>`` replaced by subject k's class word."""

        def word(match: re.Match[str]) -> str:
            subject = self.subjects[int(match.group(1)) - 1]
            return subject.class_word or f"subject {match.group(1)}"

        return PLACEHOLDER.sub(word, self.prompt)

    def make_generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """The generator to sample noise with: the one passed, or a new one seeded by ``seed``."""
        if self.generator is not None:
            return self.generator
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)


@dataclass
class Plan:
    """A generation plan: chain-of-thought text, a layout grid of subject ids, a prompt rewrite.

    ``layout`` is an ``(rows, cols)`` integer tensor; 0 means no subject, k means subject k
    (nested lists are accepted and converted). ``prompt``, when set, replaces the request's
    prompt for the encoders. ``notes`` records how the plan was made (source, retries,
    why a fallback was used...).
    """

    cot: str = ""
    layout: torch.Tensor | None = None
    prompt: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.cot, str):
            raise PlanError(f"Plan.cot must be a string, got {type(self.cot).__name__}.")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise PlanError("Plan.prompt must be a string, or None to keep the request's prompt.")
        if self.layout is not None:
            self.layout = as_layout(self.layout)

    @property
    def grid_shape(self) -> tuple[int, int] | None:
        """``(rows, cols)`` of the layout, or None without one."""
        return None if self.layout is None else (int(self.layout.shape[0]), int(self.layout.shape[1]))

    def layout_text(self) -> str:
        """The layout as rows of numbers (empty string without a layout)."""
        return "" if self.layout is None else layout_text(self.layout)

    def to_text(self) -> str:
        """The plan as text for a prompt or a log: the reasoning, then the grid with its legend."""
        parts = [self.cot.strip()] if self.cot.strip() else []
        if self.layout is not None:
            rows, cols = self.grid_shape  # type: ignore[misc]
            parts.append(f"Layout ({rows}x{cols}, 0 = empty, k = subject <k>):\n{self.layout_text()}")
        return "\n".join(parts)

    def grid_image(
        self, cell: int = 24, names: list[str | None] | None = None, title: str | None = None
    ) -> Image.Image:
        """The layout as a coloured-grid picture for people (see :func:`smg_sdk.plans.layout_image`)."""
        if self.layout is None:
            raise PlanError("This plan has no layout to draw; only plans with a layout grid have a picture.")
        return layout_image(self.layout, cell=cell, names=names, title=title)


@dataclass
class BatchRecord:
    """One sampler call of a generation: which candidates it ran, and its per-step stream weights.

    ``attention``: how the backend ran the joint attention, one line per pass and distinct step
    weights (for the FLUX backend: attention calls by group blocks, and any dense fallback and why).
    """

    candidates: list[int]
    trace: list[dict[str, float]] = field(default_factory=list)
    reference_passes: int = 0
    attention: list[str] = field(default_factory=list)


@dataclass
class PipelineOutput:
    """What :class:`SubjectPipeline` returns.

    ``images`` are PIL images (or a tensor for ``output_type="pt"``/``"latent"``), best first;
    ``plans`` and ``scores`` follow ``images``. ``candidates`` holds every generated image in
    generation order when test-time selection ran, and ``ranking[j]`` is the index in
    ``candidates`` of ``images[j]``. ``trace`` records, per step, which streams were active and
    with which weight (in the first sampler call; ``batches`` has every call's).
    ``timings`` are seconds per stage (``plan``, ``encode``, ``denoise``, ``decode``,
    ``verify``); ``encoder_calls`` counts each encoder's calls (``"<i>:<class>"`` -> count);
    ``candidate_batches`` lists the candidate indices of each sampler call.
    """

    images: list[Image.Image] | torch.Tensor
    plans: list[Plan] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    candidates: list[Image.Image] | torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    trace: list[dict[str, float]] = field(default_factory=list)
    ranking: list[int] = field(default_factory=list)
    encoder_calls: dict[str, int] = field(default_factory=dict)
    candidate_batches: list[list[int]] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)
