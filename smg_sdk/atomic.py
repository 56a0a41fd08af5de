"""Atomic folder writes: build beside the destination, then swap into place.

Saved pipelines, checkpoints, galleries and data sets are folders. Writing them in place
would leave a half-written folder behind when a run is killed; writing them into a staging
folder in the same parent and swapping it in is atomic on one file system.

The swap is one ``renameat2(RENAME_EXCHANGE)`` call where the kernel and file system offer
it (Linux): the target path holds the old folder, then the new one, never nothing. Elsewhere
the old folder is renamed aside and the new one renamed in; a process killed between those
two renames leaves the old folder under ``.<name>.old-<pid>-*/previous``, and
:func:`recover_folder` (run by every save and by :func:`~smg_sdk.serialization.load_pipeline`)
puts it back. Staging folders of dead processes are removed the same way.

Nothing here deletes what smg-sdk did not write: ``/``, the home folder, the current folder
and their ancestors are never replaced, nor is a file, and with ``kind`` an existing
non-empty folder is replaced only if it is an earlier output of the same kind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import SMGError

OUTPUT_MARKER = ".smg-output"
"""File written into every folder produced with ``atomic_folder(..., kind=...)``: ``{"kind": ...}``."""

_USE_EXCHANGE = True
"""Try ``renameat2(RENAME_EXCHANGE)`` first (tests turn it off to exercise the fallback)."""

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "renameat2", None)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the platform cannot (nothing changed then)."""
    call = _renameat2() if _USE_EXCHANGE else None
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def protected_reason(folder: Path) -> str | None:
    """Why ``folder`` must never be replaced (the root, home, current folder or an ancestor), or None."""
    folder = Path(folder).resolve()
    if folder == Path(folder.anchor):
        return "it is the file-system root"
    home, cwd = Path.home().resolve(), Path.cwd().resolve()
    if folder == home or folder in home.parents:
        return "it is your home folder or holds it"
    if folder == cwd or folder in cwd.parents:
        return "it is the current folder or holds it"
    return None


def output_kind(folder: Path) -> str | None:
    """The kind recorded in ``folder``'s :data:`OUTPUT_MARKER`, or None."""
    try:
        kind = json.loads((Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def check_output_folder(folder: str | Path, kind: str | None = None,
                        recognise: Callable[[Path], bool] | None = None) -> Path:
    """Refuse a destination smg-sdk may not replace; returns the resolved path.

    Always refused: the root, home and current folders and their ancestors, and a path that
    is a file. With ``kind``, an existing non-empty folder is accepted only if it is an earlier
    output of that kind (its :data:`OUTPUT_MARKER` says so, or ``recognise(folder)`` is true).
    """
    path = Path(folder).expanduser().resolve()
    reason = protected_reason(path)
    if reason is not None:
        raise SMGError(f"Refusing to write to {path}: {reason}. Choose a new folder, e.g. {path / 'smg-output'}.")
    if path.exists() and not path.is_dir():
        raise SMGError(f"Refusing to replace {path}: it is a file, not a folder. Choose a new folder path.")
    if kind is None or not path.is_dir() or not any(path.iterdir()):
        return path
    if output_kind(path) == kind or (recognise is not None and recognise(path)):
        return path
    raise SMGError(
        f"Refusing to replace {path}: it is not empty and is not a saved {kind} (an earlier smg output), so it "
        "may hold your files. Choose an empty or new folder (or delete this one yourself)."
    )


def claim_output_folder(folder: str | Path, kind: str) -> Path:
    """A folder that a long job writes into over time (a training run): checked as by
    :func:`check_output_folder`, created if missing and marked as ``kind``, so the job may
    write into it again later (``--resume``) and nothing else is mistaken for it."""
    path = check_output_folder(folder, kind)
    path.mkdir(parents=True, exist_ok=True)
    if output_kind(path) != kind:
        _mark(path, kind)
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(staging|old)-(\d+)-[^/]+")


def recover_folder(folder: str | Path) -> None:
    """Undo a swap of ``folder`` cut short by a killed process, and remove its stale staging folders.

    Only folders left by processes that no longer run are touched: if ``folder`` is missing
    and a dead writer left the previous folder aside, it is moved back; everything else such a
    writer left beside ``folder`` (staging folders, a previous folder already replaced) is removed.
    """
    folder = Path(folder).expanduser().resolve()
    parent = folder.parent
    if not parent.is_dir():
        return
    pattern = _temp_pattern(folder.name)
    for entry in sorted(parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(2))):
            continue
        previous = entry / "previous"
        if match.group(1) == "old" and previous.is_dir() and not os.path.lexists(folder):
            os.replace(previous, folder)
        shutil.rmtree(entry, ignore_errors=True)


def _mark(staging: Path, kind: str) -> None:
    (staging / OUTPUT_MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")


def _swap_in(staging: Path, folder: Path) -> None:
    """Make ``staging`` the folder at ``folder``; the old folder (if any) is removed afterwards."""
    if not os.path.lexists(folder):
        os.replace(staging, folder)
        return
    if exchange(staging, folder):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-{os.getpid()}-", dir=folder.parent))
    os.replace(folder, old / "previous")
    os.replace(staging, folder)  # a kill just before this line is undone by recover_folder()
    shutil.rmtree(old, ignore_errors=True)


def current_umask() -> int:
    """The process umask (read by setting it and setting it back), for files and folders made
    private by ``tempfile`` that should end with a new file's or folder's usual mode."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_file(path: str | Path, write: Callable[[str], None], suffix: str | None = None) -> None:
    """Call ``write(temporary_path)`` beside ``path``, then rename the result into place: no
    half-written file survives, and the file gets a new file's usual mode (``mkstemp`` makes it
    private). ``suffix``: the temporary file's (default ``path``'s own, for writers that pick a
    format by it)."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix,
                                    dir=path.parent)
    os.close(handle)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~current_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(folder: str | Path, kind: str | None = None,
                  recognise: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds it replaces ``folder``.

    At every moment ``folder`` is either the complete old folder or the complete new one. If
    the block raises, the staging folder is removed and ``folder`` is left as it was. The
    destination is checked first with :func:`check_output_folder` (``kind``, ``recognise``);
    with ``kind`` the new folder also gets an :data:`OUTPUT_MARKER` naming it.
    """
    folder = check_output_folder(folder, kind, recognise)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-{os.getpid()}-", dir=folder.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the result gets a new folder's usual mode
    try:
        if kind is not None:
            _mark(staging, kind)
        yield staging
        _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
