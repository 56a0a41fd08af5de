"""User-facing value types: subjects, requests, plans and pipeline outputs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from PIL import Image

from .errors import RequestError

ImageLike = Union[Image.Image, torch.Tensor]

PLACEHOLDER = re.compile(r"<(\d+)>")
"""Subject placeholders in prompts: ``<1>`` is the first subject, ``<2>`` the second..."""


@dataclass
class Subject:
    """One reference subject: an image plus, optionally, the word naming its class.

    ``image`` is a PIL image or a ``(3, H, W)`` float tensor in ``[0, 1]``.
    ``class_word`` ("dog", "backpack") replaces the subject's placeholder in the prompt text
    seen by text encoders. ``index`` is the subject's 0-based position in the request; it is
    filled in by :class:`Request`.
    """

    image: ImageLike
    class_word: str | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.image, torch.Tensor):
            if self.image.ndim != 3 or self.image.shape[0] not in (1, 3):
                raise RequestError(
                    f"Subject image tensor has shape {tuple(self.image.shape)}; "
                    "pass a (3, H, W) tensor with values in [0, 1] or a PIL image."
                )
        elif not isinstance(self.image, Image.Image):
            raise RequestError(
                f"Subject image is a {type(self.image).__name__}; pass a PIL.Image.Image or a (3, H, W) tensor."
            )
        if self.class_word is not None and (not isinstance(self.class_word, str) or not self.class_word.strip()):
            raise RequestError("Subject.class_word must be a non-empty string such as 'dog', or None.")

    def pil(self) -> Image.Image:
        """The image as an RGB PIL image."""
        if isinstance(self.image, Image.Image):
            return self.image.convert("RGB")
        array = (self.image.detach().float().clamp(0, 1) * 255).round().byte()
        if array.shape[0] == 1:
            array = array.expand(3, -1, -1)
        return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), "RGB")


def placeholders_in(prompt: str) -> list[int]:
    """The subject numbers named in ``prompt`` (``"<2> and <1>"`` -> ``[2, 1]``), in order."""
    return [int(m) for m in PLACEHOLDER.findall(prompt)]


@dataclass
class Request:
    """Everything one generation call needs, validated on construction.

    Placeholders ``<k>`` in the prompt refer to ``subjects[k-1]``. If the prompt has any
    placeholder it must name every subject, and only subjects that exist.
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

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestError("The prompt must be a non-empty string.")
        if not isinstance(self.subjects, (list, tuple)):
            raise RequestError("subjects must be a list of Subject objects.")
        self.subjects = list(self.subjects)
        for i, subject in enumerate(self.subjects):
            if not isinstance(subject, Subject):
                raise RequestError(
                    f"subjects[{i}] is a {type(subject).__name__}; wrap images as Subject(image, 'class word')."
                )
        m = self.size_multiple
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise RequestError(f"size_multiple must be a positive integer such as 16, got {m!r}.")
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RequestError(f"{name} must be a positive integer, got {value!r}.")
            if value % self.size_multiple:
                lower = max(self.size_multiple, value - value % self.size_multiple)
                raise RequestError(
                    f"{name}={value} is not a multiple of {self.size_multiple}; use {lower} or "
                    f"{lower + self.size_multiple}."
                )
        steps = self.num_inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise RequestError(f"num_inference_steps must be an integer >= 1, got {steps!r}.")
        n = self.num_images_per_prompt
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(f"num_images_per_prompt must be an integer >= 1, got {n!r}.")
        for name in ("guidance_scale", "true_cfg_scale"):
            value = getattr(self, name)
            not_number = isinstance(value, bool) or not isinstance(value, (int, float))
            if not_number or (isinstance(value, float) and not math.isfinite(value)) or value < 0:
                raise RequestError(f"{name} must be a finite number >= 0, got {value!r}.")
        if self.seed is not None and self.generator is not None:
            raise RequestError("Pass either seed or generator, not both.")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise RequestError(f"seed must be an integer, got {self.seed!r}.")
        if self.seed is not None and not -(2**63) <= self.seed < 2**64:
            raise RequestError(f"seed must fit in 64 bits (torch.Generator.manual_seed), got {self.seed!r}.")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise RequestError("generator must be a torch.Generator.")
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise RequestError("negative_prompt must be a string or None.")
        self._check_placeholders()
        for i, subject in enumerate(self.subjects):
            subject.index = i

    def _check_placeholders(self) -> None:
        named = placeholders_in(self.prompt)
        if not named:
            return
        n = len(self.subjects)
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
        from .plans import PlanError, as_layout

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
        from .plans import layout_text

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
        from .plans import PlanError, layout_image

        if self.layout is None:
            raise PlanError("This plan has no layout to draw; only plans with a layout grid have a picture.")
        return layout_image(self.layout, cell=cell, names=names, title=title)


@dataclass
class PipelineOutput:
    """What :class:`SubjectPipeline` returns.

    ``images`` are PIL images (or a tensor for ``output_type="pt"``/``"latent"``), best first;
    ``plans`` and ``scores`` follow ``images``. ``candidates`` holds every generated image in
    generation order when test-time selection ran, and ``ranking[j]`` is the index in
    ``candidates`` of ``images[j]``. ``trace`` records, per step, which streams were active and
    with which weight.
    """

    images: list[Image.Image] | torch.Tensor
    plans: list[Plan] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    candidates: list[Image.Image] | torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    trace: list[dict[str, float]] = field(default_factory=list)
    ranking: list[int] = field(default_factory=list)
