"""Contact sheets: several images with captions in one PNG, for people to look at."""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw


def contact_sheet(images: Sequence[Image.Image], captions: Sequence[str] | None = None, columns: int = 4,
                  cell: int = 128, caption_height: int = 16) -> Image.Image:
    """Tile ``images`` (resized to ``cell`` px squares) in a grid, each with a caption under it."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
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
