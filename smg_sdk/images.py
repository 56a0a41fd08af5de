"""One loading path for user images: files, PIL images, tensors and arrays -> 8-bit RGB PIL.

Every reference image a user gives (``Subject(image)``, ``smg generate --subject``, the
examples) goes through :func:`load_image`, which either returns a fully decoded RGB image or
raises :class:`~smg_sdk.errors.RequestError` naming what was wrong. The rules:

- **Files** (``str`` or ``os.PathLike``): must be a readable image file (not a folder); the
  whole file is decoded up front, so truncated files fail here. Files whose header claims
  more than :data:`MAX_IMAGE_PIXELS` pixels are refused before decoding (decompression bombs).
- **Orientation**: EXIF orientation is applied (``ImageOps.exif_transpose``), as diffusers'
  ``load_image`` does, so phone photos are upright.
- **Bit depth**: 16-bit and 32-bit integer modes (``I;16*``, ``I``) are scaled from
  0..65535 to 0..255; float mode ``F`` must hold values in [0, 1]. Other modes (palette,
  CMYK, YCbCr, LAB, HSV, 1-bit) are converted by Pillow.
- **Transparency** (``RGBA``, ``LA``, ``La``, ``PA``, ``RGBa``, palette with transparency)
  is composited on :data:`BACKGROUND` (white), the usual backdrop of product shots.
- **Tensors** are ``(C, H, W)`` with C = 1 or 3; **numpy arrays** are ``(H, W)`` or
  ``(H, W, C)`` with C = 1 or 3 (the layout PIL uses). ``uint8`` values are read as 0..255,
  ``uint16`` as 0..65535, floating point as [0, 1] (a float tensor holding 0..255 values is
  refused, not clamped to white). NaN/inf, empty, sparse, meta, complex, boolean and other
  integer types are refused.
- **Size**: both sides >= 1 and at most :data:`MAX_IMAGE_PIXELS` pixels in all.

**Reference aspect policy** (:func:`fit_reference`, named ``"fit-pad"``): a reference is
never stretched. It is scaled (aspect ratio kept) to fit inside the reference box (the target
size, or the encoder's ``size``), then padded with :data:`BACKGROUND`, centred, up to the next
multiple of the backend's size multiple (16 px for FLUX). Each reference is then encoded on its
own token grid, which the position policies place like any other grid. A square reference in a
square box is exactly the box, as before; a 32 x 96 photo in a 128 x 128 box becomes a 48 x 128
grid (43 x 128 of picture, 2-3 px of padding each side), so a round subject stays round.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import RequestError

MAX_IMAGE_PIXELS = 89_478_485
"""The most pixels a reference image may have (Pillow's own decompression-bomb limit)."""

BACKGROUND = (255, 255, 255)
"""The colour transparent pixels are composited on."""

_ALPHA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")
_WIDE_INT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def load_image(source: Any, name: str = "image") -> Image.Image:
    """``source`` (path, PIL image, tensor or array) as a decoded 8-bit RGB PIL image.

    ``name`` is how errors refer to the argument (e.g. ``"subjects[1].image"``). Returns a
    new image (H, W >= 1, mode ``"RGB"``); raises :class:`RequestError` for anything it cannot
    turn into one under the rules in this module's docstring.
    """
    if isinstance(source, (str, os.PathLike)):
        return _from_pil(_open_file(source, name), name)
    if isinstance(source, Image.Image):
        return _from_pil(source, name)
    if isinstance(source, torch.Tensor):
        return _from_array(_tensor_to_hwc(source, name), name)
    if isinstance(source, np.ndarray):
        return _from_array(_array_to_hwc(source, name), name)
    raise RequestError(
        f"{name} is a {type(source).__name__}; pass a PIL image, an image file path, a (C, H, W) tensor or an "
        "(H, W[, C]) numpy array (uint8 0..255 or float 0..1)."
    )


def _open_file(source: Any, name: str) -> Image.Image:
    path = Path(source).expanduser()
    if path.is_dir():
        raise RequestError(f"{name} {str(source)!r} is a folder, not an image file; pass the path of one image.")
    if not path.is_file():
        raise RequestError(f"{name} {str(source)!r} does not exist; pass the path of an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_size(image.size, name)
            image.load()
        return image
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(f"{name} {str(source)!r} is too large to load ({exc}); downscale it first.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise RequestError(f"{name} {str(source)!r} could not be read as an image ({exc}); pass a PNG, JPEG or WebP "
                           "file that opens in an image viewer.") from exc


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise RequestError(f"{name} is empty ({width}x{height} pixels); pass an image with at least one pixel.")
    if width * height > MAX_IMAGE_PIXELS:
        raise RequestError(
            f"{name} has {width}x{height} = {width * height:,} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed; "
            "downscale it first (references are resized to the generation size anyway)."
        )


def _from_pil(image: Image.Image, name: str) -> Image.Image:
    """Any PIL image -> decoded, upright, 8-bit RGB (see the module docstring)."""
    try:
        _check_size(image.size, name)
        image.load()
        image = ImageOps.exif_transpose(image)
    except RequestError:
        raise
    except Exception as exc:  # noqa: BLE001 - closed files, truncated data, broken EXIF: all unreadable input
        raise RequestError(f"{name} could not be decoded ({type(exc).__name__}: {exc}); reopen the image, or "
                           "pass a fully loaded copy (image.copy()).") from exc
    mode = image.mode
    if mode in _WIDE_INT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return _from_array(np.clip(values / 65535.0, 0.0, 1.0)[..., None], name)
    if mode == "F":
        return _from_array(np.asarray(image, dtype=np.float32)[..., None], name)
    if mode == "La":
        image = image.convert("LA")  # premultiplied -> straight alpha (Pillow cannot go to RGB directly)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise RequestError(f"{name} has mode {mode!r}, which cannot be converted to RGB ({exc}); save it as an "
                           "8-bit RGB PNG first.") from exc


def _tensor_to_hwc(tensor: torch.Tensor, name: str) -> np.ndarray:
    """A ``(C, H, W)`` tensor as an ``(H, W, C)`` numpy array, refusing what is not a plain image."""
    if tensor.layout != torch.strided:
        raise RequestError(f"{name} is a {tensor.layout} tensor; pass a dense tensor (tensor.to_dense()).")
    if tensor.device.type == "meta":
        raise RequestError(f"{name} is a meta tensor, which holds no values; pass a tensor with data.")
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise RequestError(
            f"{name} tensor has shape {tuple(tensor.shape)}; pass a (3, H, W) or (1, H, W) tensor (channels first)."
        )
    _check_size((int(tensor.shape[2]), int(tensor.shape[1])), name)
    data = tensor.detach().cpu()
    if data.dtype == torch.bfloat16 or data.dtype == torch.float16:
        data = data.float()
    return data.permute(1, 2, 0).numpy()


def _array_to_hwc(array: np.ndarray, name: str) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, C)`` array as ``(H, W, C)``."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise RequestError(
            f"{name} array has shape {array.shape}; pass an (H, W) or (H, W, 3) array (channels last, as PIL)."
        )
    _check_size((int(array.shape[1]), int(array.shape[0])), name)
    return array


def _from_array(hwc: np.ndarray, name: str) -> Image.Image:
    """``(H, W, C)`` values under the range rule (uint8 0..255, uint16 0..65535, float 0..1) -> RGB."""
    kind = hwc.dtype
    if kind == np.uint8:
        pixels = hwc
    elif kind == np.uint16:
        pixels = np.round(hwc.astype(np.float64) / 257.0).astype(np.uint8)
    elif np.issubdtype(kind, np.floating):
        values = hwc.astype(np.float64)
        if not np.isfinite(values).all():
            raise RequestError(f"{name} holds NaN or infinite values; pass finite values in [0, 1].")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0.0 or high > 1.0:
            hint = " (it looks like 0..255: divide by 255 or pass uint8)" if high > 1.0 and low >= 0.0 else ""
            raise RequestError(f"{name} has float values in [{low:g}, {high:g}]; floats must lie in [0, 1]{hint}.")
        pixels = np.round(values * 255.0).astype(np.uint8)
    else:
        raise RequestError(
            f"{name} has dtype {kind}; pass uint8 (0..255), uint16 (0..65535) or floating point (0..1) values."
        )
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


REFERENCE_POLICY = "fit-pad"
"""The name of the reference aspect policy described in this module's docstring."""


def reference_size(size: tuple[int, int], box: tuple[int, int], multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((content_w, content_h), (grid_w, grid_h))`` for an image of ``size`` (w, h) in ``box`` (w, h).

    The content keeps the image's aspect ratio and fits inside the box; the grid is the content
    rounded up to multiples of ``multiple`` (never larger than the box, which is a multiple).
    """
    (w, h), (box_w, box_h) = size, box
    scale = min(box_w / w, box_h / h)
    content_w = min(box_w, max(1, round(w * scale)))
    content_h = min(box_h, max(1, round(h * scale)))
    grid_w = min(box_w, -(-content_w // multiple) * multiple)
    grid_h = min(box_h, -(-content_h // multiple) * multiple)
    return (content_w, content_h), (grid_w, grid_h)


def fit_reference(image: Image.Image, height: int, width: int, multiple: int) -> Image.Image:
    """``image`` under the ``"fit-pad"`` policy for a ``height x width`` box (both multiples of ``multiple``).

    Returns an RGB image whose sides are multiples of ``multiple``, at most the box; the image is
    returned unchanged when it already has the box's aspect ratio (the VAE preprocessor resizes it).
    """
    (content_w, content_h), (grid_w, grid_h) = reference_size(image.size, (width, height), multiple)
    if (content_w, content_h) == (grid_w, grid_h):
        return image if (grid_w, grid_h) == (width, height) else image.resize((grid_w, grid_h), Image.LANCZOS)
    canvas = Image.new("RGB", (grid_w, grid_h), BACKGROUND)
    canvas.paste(image.convert("RGB").resize((content_w, content_h), Image.LANCZOS),
                 ((grid_w - content_w) // 2, (grid_h - content_h) // 2))
    return canvas


__all__ = ["BACKGROUND", "MAX_IMAGE_PIXELS", "REFERENCE_POLICY", "fit_reference", "load_image", "reference_size"]
