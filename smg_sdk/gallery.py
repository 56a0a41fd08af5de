"""Contact sheets: several images with captions in one PNG, for people to look at."""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from .errors import DataError


def contact_sheet(images: Sequence[Image.Image], captions: Sequence[str] | None = None, columns: int = 4,
                  cell: int = 128, caption_height: int = 16) -> Image.Image:
    """Tile ``images`` (resized to ``cell`` px squares) in a grid, each with a caption under it."""
    if not images:
        raise DataError("contact_sheet: images is empty; pass at least one image.")
    captions = list(captions or [""] * len(images))
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell, rows * (cell + caption_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % columns) * cell, (i // columns) * (cell + caption_height)
        sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
        draw.text((x + 2, y + cell + 2), caption[: cell // 6], fill="black")
    return sheet


def gallery_rows(rows: Sequence[tuple[Sequence[Image.Image], Image.Image, Image.Image | None, str]],
                 cell: int = 128, gap: int = 6) -> Image.Image:
    """One row per request: its references, the output and (optionally) the ground truth, with
    the instruction written above. ``rows`` are ``(references, output, truth or None, text)``."""
    return comparison_rows([(refs, [(output, "output"), (truth, "truth")], text) for refs, output, truth, text in rows],
                           cell, gap)


def comparison_rows(rows: Sequence[tuple[Sequence[Image.Image], Sequence[tuple[Image.Image | None, str]], str]],
                    cell: int = 128, gap: int = 6) -> Image.Image:
    """One row per request: its references, then labelled images (outputs of several methods, the
    truth...; None leaves the cell blank), with the instruction written above. ``rows`` are
    ``(references, [(image or None, label), ...], text)``; the labelled images line up in columns."""
    width = max(len(refs) for refs, _, _ in rows)
    text_height = 18
    columns = width + max(len(labelled) for _, labelled, _ in rows)
    sheet = Image.new("RGB", (columns * (cell + gap) + gap, len(rows) * (cell + text_height + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (refs, outputs, text) in enumerate(rows):
        y = gap + r * (cell + text_height + gap)
        draw.text((gap, y + 3), text, fill="black")
        labelled = [(im, f"reference {k + 1}") for k, im in enumerate(refs)]
        labelled += [(None, "")] * (width - len(refs)) + list(outputs)
        for c, (image, label) in enumerate(labelled):
            if image is None:
                continue
            x = gap + c * (cell + gap)
            sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y + text_height))
            draw.text((x + 3, y + text_height + 3), label, fill="black")
    return sheet
