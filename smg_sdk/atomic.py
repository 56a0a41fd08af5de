"""Atomic folder writes: build beside the destination, then swap into place.

Saved pipelines, checkpoints, galleries and data sets are folders. Writing them in place
would leave a half-written folder behind when a run is killed; writing them into a staging
folder in the same parent and renaming is atomic on one file system.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds it replaces ``folder``.

    An existing ``folder`` is moved aside first and removed only after the swap, so at every
    moment either the old or the new folder is complete. If the block raises, the staging
    folder is removed and ``folder`` is left as it was.
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / "previous")
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
