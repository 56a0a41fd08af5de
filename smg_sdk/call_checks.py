"""Up-front checks of :meth:`SubjectPipeline.__call__` arguments that are not part of a Request.

Each raises :class:`~smg_sdk.errors.RequestError` naming the argument, before any model runs
(or, for the step callback, at the step that returned something unusable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .errors import RequestError
from .types import MAX_BATCH, Request, Subject, as_int

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
IMAGE_TYPES = (Image.Image, torch.Tensor, np.ndarray, str, Path)
"""What ``subjects`` may be instead of a list: one subject (or one image of one)."""


def as_subjects(subjects: Any) -> list[Subject]:
    """``subjects`` as a list of :class:`Subject`: a list/tuple of subjects or images, one subject, one image."""
    if subjects is None:
        return []
    if isinstance(subjects, (Subject, *IMAGE_TYPES)):
        subjects = [subjects]
    if not isinstance(subjects, (list, tuple)):
        raise RequestError(
            f"subjects must be a list of Subject objects (or images), got a {type(subjects).__name__}; "
            "pass e.g. [Subject(image, 'dog')]."
        )
    out = []
    for i, item in enumerate(subjects):
        if isinstance(item, Subject):
            out.append(item)
        elif isinstance(item, IMAGE_TYPES):
            out.append(_subject_of(item, i))
        else:
            raise RequestError(
                f"subjects[{i}] is a {type(item).__name__}; pass Subject(image, 'class word') or an image."
            )
    return out


def _subject_of(image: Any, i: int) -> Subject:
    try:
        return Subject(image)
    except RequestError as exc:
        raise RequestError(str(exc).replace("Subject.image", f"subjects[{i}]", 1)) from exc


def check_call_options(
    output_type: Any,
    num_candidates: Any,
    candidate_batch_size: Any,
    callback_on_step_end: Any,
    cached_references: Any,
) -> None:
    """Validate the call options that do not belong to a :class:`Request`."""
    from .sampling import CachedReferenceOptions

    if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
        raise RequestError(f"output_type must be 'pil', 'np', 'pt' or 'latent', not {output_type!r}.")
    as_int(num_candidates, "num_candidates", 1, MAX_BATCH)
    if candidate_batch_size is not None:
        as_int(candidate_batch_size, "candidate_batch_size", 1, hint=" or None")
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise RequestError(
            f"callback_on_step_end must be callable (pipe, step, timestep, tensors) -> dict or None, got a "
            f"{type(callback_on_step_end).__name__}."
        )
    if cached_references is not None and not isinstance(cached_references, CachedReferenceOptions):
        raise RequestError(
            f"cached_references must be a CachedReferenceOptions or None, got a {type(cached_references).__name__}."
        )


def check_latents(latents: Any, request: Request, backend: Any) -> torch.Tensor | None:
    """Starting latents of one candidate, checked and moved to the backend's device and dtype.

    They must be packed like FluxPipeline's: ``(num_images_per_prompt, (H/16)*(W/16), C*4)``,
    floating point, dense and finite.
    """
    if latents is None:
        return None
    rows, cols = backend.token_grid(request.height, request.width)
    shape = (request.num_images_per_prompt, rows * cols, int(backend.latent_channels) * 4)
    if not isinstance(latents, torch.Tensor):
        raise RequestError(f"latents must be a torch.Tensor of shape {shape}, got a {type(latents).__name__}.")
    if latents.layout != torch.strided or latents.device.type == "meta":
        raise RequestError("latents must be a dense tensor holding data (not sparse or meta).")
    if not latents.is_floating_point():
        raise RequestError(f"latents must be floating point, got {latents.dtype}.")
    if tuple(latents.shape) != shape:
        raise RequestError(
            f"latents have shape {tuple(latents.shape)}; for {request.height}x{request.width} and "
            f"num_images_per_prompt={request.num_images_per_prompt} they must be packed as {shape}."
        )
    if not bool(torch.isfinite(latents).all()):
        raise RequestError("latents hold NaN or infinite values; pass finite noise (e.g. torch.randn).")
    return latents.to(backend.device, backend.dtype)


def run_callback(pipe: Any, callback: Callable[..., Any], step: int, timestep: torch.Tensor,
                 tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Call the user's step callback and check what it returns (None or a dict; same-shaped latents)."""
    changes = callback(pipe, step, timestep, tensors)
    if changes is None:
        return {}
    if not isinstance(changes, dict):
        raise RequestError(
            f"callback_on_step_end returned a {type(changes).__name__} at step {step}; return a dict "
            "(e.g. {'latents': latents}) or None."
        )
    new = changes.get("latents", tensors["latents"])
    old = tensors["latents"]
    if not isinstance(new, torch.Tensor) or new.shape != old.shape or not new.is_floating_point():
        raise RequestError(
            f"callback_on_step_end returned latents of {getattr(new, 'shape', type(new).__name__)} at step {step}; "
            f"they must be a float tensor of shape {tuple(old.shape)}."
        )
    if not bool(torch.isfinite(new).all()):
        raise RequestError(f"callback_on_step_end returned latents with NaN or infinite values at step {step}.")
    return {**changes, "latents": new.to(old.device, old.dtype)}


__all__ = ["OUTPUT_TYPES", "as_subjects", "check_call_options", "check_latents", "run_callback"]
