"""Batch generation: ``smg generate --batch requests.jsonl --out DIR``.

One request per line of a JSON Lines file::

    {"id": "dog-beach", "prompt": "<1> on the beach", "subjects": [{"image": "dog.png", "class": "dog"}],
     "seed": 0, "steps": 4, "height": 128, "width": 128, "guidance": 3.5, "candidates": 1}

``prompt`` is required; ``subjects`` entries are ``{"image": PATH, "class": WORD}`` or
``"PATH[:WORD]"`` strings (relative paths are read from the file's folder); every other key is
optional. ``id`` (letters, digits, ``.``, ``_``, ``-``) names the outputs; without it a request
is named by its line number (``line-000007``), so give ids if the file will be edited between runs.

What lands in ``DIR``, each file written atomically (temp file, then rename):

- ``<id>.png``: the chosen image, then ``<id>.json``: its record (line, seed, prompt, scores,
  timings, which process made it). The record is the completion mark: a rerun skips every
  request whose record and image exist, so an interrupted run resumes where it stopped.
- ``errors/line-<n>.json``: why line ``n`` produced nothing (bad JSON, a missing or unknown key,
  an unreadable image, a request the SDK refuses). Bad lines never stop the others; a rerun tries
  them again.
- ``summary.json``: counts (done, generated now, skipped, failed), the error list, processes, the
  run's wall seconds and each process's counts and seconds spent generating (model loading excluded).

The command exits 0 once every line was tried, bad lines included (read ``failed`` in the
summary); it exits 2 without generating anything when the file or ``--out`` is unusable.

Under ``accelerate launch --num_processes N`` request ``i`` (in file order) is made by process
``i mod N``, so each output is written exactly once; every request is generated alone from its own
seed, so its image is byte-identical to a one-process run (with the same threads per process).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RequestError, SMGError

BATCH_KIND = "batch"
"""Output-folder kind of a batch run (an existing non-empty ``--out`` must be an earlier batch run)."""

FIELDS = {"id", "prompt", "subjects", "seed", "steps", "height", "width", "guidance", "candidates"}
"""Keys a request line may have."""

_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_CALL_ARGS = {"steps": "num_inference_steps", "height": "height", "width": "width", "guidance": "guidance_scale",
              "candidates": "num_candidates", "seed": "seed"}


@dataclass
class BatchItem:
    """One line of the requests file: its parsed fields, or why it cannot be run."""

    line: int
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _check_fields(data: Any) -> dict[str, Any]:
    """The line's object, with every key known and the prompt present (RequestError naming the key)."""
    if not isinstance(data, dict):
        raise RequestError(f"a request line must be a JSON object, got {type(data).__name__}.")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise RequestError(f"unknown key {unknown[0]!r}; a request may have {', '.join(sorted(FIELDS))}.")
    if "prompt" not in data:
        raise RequestError("key 'prompt' is missing; every request needs one.")
    for name in ("seed", "steps", "height", "width", "candidates"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RequestError(f"key {name!r} must be a whole number, got {value!r}.")
    subjects = data.get("subjects", [])
    if not isinstance(subjects, list):
        raise RequestError(f"key 'subjects' must be a list, got {type(subjects).__name__}.")
    return data


def parse_line(text: str, line: int, seen: set[str]) -> BatchItem:
    """One non-blank line -> :class:`BatchItem` (with ``error`` set when the line is bad)."""
    key = f"line-{line:06d}"
    try:
        data = _check_fields(json.loads(text))
    except json.JSONDecodeError as exc:
        return BatchItem(line, key, error=f"not valid JSON ({exc.msg} at column {exc.colno}).")
    except RequestError as exc:
        return BatchItem(line, key, error=str(exc))
    if "id" in data:
        if not isinstance(data["id"], str) or not _ID.match(data["id"]):
            return BatchItem(line, key, error=f"key 'id' must be 1-100 letters, digits, '.', '_' or '-' "
                                              f"(not starting with '.'), got {data['id']!r}.")
        key = data["id"]
        if key == "summary":
            return BatchItem(line, f"line-{line:06d}", error="id 'summary' is reserved (summary.json); choose another.")
    if key in seen:
        return BatchItem(line, key, error=f"id {key!r} is used by an earlier line; ids must be unique.")
    seen.add(key)
    return BatchItem(line, key, data)


def read_requests(path: str | Path) -> list[BatchItem]:
    """Every non-blank line of the JSON Lines file at ``path``, in order."""
    path = Path(path)
    if not path.is_file():
        raise RequestError(f"--batch {str(path)!r} is not a file; pass a JSON Lines file, one request per line.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RequestError(f"--batch {str(path)!r} is not UTF-8 text ({exc.reason}).") from exc
    seen: set[str] = set()
    items = [parse_line(text, n, seen) for n, text in enumerate(lines, start=1) if text.strip()]
    if not items:
        raise RequestError(f"--batch {str(path)!r} holds no requests.")
    return items


def _subject(spec: Any, base: Path, number: int):
    """``{"image": PATH, "class": WORD}`` or ``"PATH[:WORD]"`` -> Subject, paths relative to ``base``."""
    from .cli import split_subject_spec
    from .types import Subject

    if isinstance(spec, str):
        path, word = split_subject_spec(spec, base)
    elif isinstance(spec, dict) and isinstance(spec.get("image"), str) and set(spec) <= {"image", "class"}:
        path, word = spec["image"], spec.get("class") or ""
    else:
        raise RequestError(f"subjects[{number}] must be \"PATH[:CLASS]\" or {{\"image\": PATH, \"class\": WORD}}, "
                           f"got {spec!r}.")
    try:
        return Subject(str(base / path), word.strip() or None if isinstance(word, str) else word)
    except RequestError as exc:
        raise RequestError(f"subjects[{number}] ({path!r}): {exc}") from exc


def is_done(out: Path, key: str) -> bool:
    """Whether request ``key`` finished in an earlier run (its record says ok and its image exists)."""
    record = out / f"{key}.json"
    try:
        return json.loads(record.read_text()).get("status") == "ok" and (out / f"{key}.png").is_file()
    except (OSError, ValueError, AttributeError):
        return False


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from .cli import _atomic

    text = json.dumps(data, indent=2, default=str)
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def generate_item(pipe, item: BatchItem, base: Path, out: Path, rank: int, defaults: dict[str, Any]) -> None:
    """Generate one request and write ``<key>.png`` then ``<key>.json`` (raises SMGError on bad input).

    ``defaults`` (the command line's ``--seed``, ``--steps``...) fill the keys the line leaves out.
    """
    from .cli import _atomic

    fields = {**{k: v for k, v in defaults.items() if v is not None}, **item.fields}
    subjects = [_subject(spec, base, k) for k, spec in enumerate(fields.get("subjects", []))]
    kwargs = {_CALL_ARGS[k]: fields[k] for k in _CALL_ARGS if fields.get(k) is not None}
    kwargs.setdefault("seed", 0)
    result = pipe(fields["prompt"], subjects, **kwargs)
    _atomic(out / f"{item.key}.png", lambda tmp: result.images[0].save(tmp, format="PNG"))
    plans = [{"prompt": p.prompt, "cot": p.cot} for p in result.plans] if result.plans else []
    _write_json(out / f"{item.key}.json", {
        "status": "ok", "line": item.line, "id": item.key, "prompt": fields["prompt"], "seed": kwargs["seed"],
        "image": f"{item.key}.png", "scores": result.scores, "plans": plans, "timings": result.timings,
        "process": rank,
    })


def run_share(pipe, items: list[BatchItem], base: Path, out: Path, rank: int, progress: bool,
              defaults: dict[str, Any]) -> dict[str, Any]:
    """Run this process's ``items``: skip finished ones, record errors; returns the counts and the seconds spent."""
    from tqdm.auto import tqdm

    counts: dict[str, Any] = {"generated": 0, "skipped": 0, "failed": 0}
    began = time.perf_counter()
    for item in tqdm(items, desc=f"batch (process {rank})", position=rank, disable=not progress):
        error_file = out / "errors" / f"line-{item.line:06d}.json"
        error_file.unlink(missing_ok=True)  # a rerun tries the line again
        if item.error is None and is_done(out, item.key):
            counts["skipped"] += 1
            continue
        error = item.error
        if error is None:
            try:
                generate_item(pipe, item, base, out, rank, defaults)
                counts["generated"] += 1
                continue
            except SMGError as exc:
                error = str(exc)
        error_file.parent.mkdir(exist_ok=True)
        _write_json(error_file, {"status": "error", "line": item.line, "id": item.key, "error": error})
        counts["failed"] += 1
    counts["seconds"] = round(time.perf_counter() - began, 3)
    return counts


def summarise(items: list[BatchItem], out: Path, counts: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The run's summary, read back from what is on disk (every process's outputs)."""
    errors = []
    for item in items:
        file = out / "errors" / f"line-{item.line:06d}.json"
        if file.is_file():
            errors.append({k: v for k, v in json.loads(file.read_text()).items() if k != "status"})
    done = sum(is_done(out, item.key) for item in items if item.error is None)
    return {
        "requests": len(items), "done": done, "failed": len(errors),
        "generated": sum(c["generated"] for c in counts), "skipped": sum(c["skipped"] for c in counts),
        "processes": len(counts), "per_process": counts, "seconds": round(seconds, 3), "errors": errors,
    }


def check_batch_out(out: str) -> Path:
    """``--out`` of a batch run: a folder (new, empty or an earlier batch run), not an image path."""
    from .atomic import check_output_folder

    path = Path(out)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        raise RequestError(f"--out {out!r} names an image; with --batch, --out is a folder, e.g. --out batch-out.")
    return check_output_folder(path, BATCH_KIND)


def cmd_generate_batch(args: argparse.Namespace) -> int:
    """``smg generate --batch FILE --out DIR``: every request of FILE, split over accelerate's processes."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from .atomic import claim_output_folder
    from .cli import _load_pipeline, _quiet_loading

    if args.subject:
        raise RequestError("--subject goes in the requests file with --batch (key 'subjects'), not on the command line.")
    began = time.monotonic()
    items = read_requests(args.batch)
    out = check_batch_out(args.out)
    state = PartialState(cpu=True)
    if state.is_main_process:
        claim_output_folder(out, BATCH_KIND)
    state.wait_for_everyone()
    _quiet_loading()
    pipe = _load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    mine = items[state.process_index :: state.num_processes]
    defaults = {"seed": args.seed, "steps": args.steps, "height": args.height, "width": args.width,
                "guidance": args.guidance, "candidates": args.candidates}
    counts = run_share(pipe, mine, Path(args.batch).resolve().parent, out, state.process_index, not args.quiet,
                       defaults)
    every = gather_object([counts]) if state.num_processes > 1 else [counts]
    if state.is_main_process:
        summary = summarise(items, out, every, time.monotonic() - began)
        _write_json(out / "summary.json", summary)
        print(f"{summary['done']} of {summary['requests']} requests done ({summary['generated']} now, "
              f"{summary['skipped']} skipped), {summary['failed']} failed; wrote {out / 'summary.json'}")
    state.wait_for_everyone()
    if state.num_processes > 1:
        state.destroy_process_group()
    return 0  # bad lines are in the summary; a non-zero exit would make `accelerate launch` report a crash
