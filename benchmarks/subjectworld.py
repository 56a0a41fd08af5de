"""Issue 11's claims table on held-out SubjectWorld requests: ``benchmarks/SUBJECTWORLD.md`` and its raw payloads.

    python benchmarks/subjectworld.py [--quick] [--samples N] [--subjects 1,2,3,4] [--seed 0] [--out DIR]
    python benchmarks/subjectworld.py --rows ground-truth copy-paste tiny tiny:text-only [--samples 16]
    python benchmarks/subjectworld.py --from-json benchmarks/subjectworld_results.json [--out DIR]

Without ``--rows`` it measures every row of :data:`claims.ROWS` (the issue's table: calibration,
reference LoRA, Squeeze, MUSIC, AlignGen) at each row's own subject counts, 32 held-out requests
per subject count (``--quick``: 8, same rows), and writes ``SUBJECTWORLD.md`` (the command,
commit, date, seed, one table per group with every metric's mean and 95 % interval and the
median seconds per request, what the table can and cannot say, and the variants not measured)
and ``subjectworld_results.json`` (every payload :func:`smg_sdk.eval.world_eval.evaluate`
returned, so ``--from-json`` rewrites the note without rerunning) into ``--out`` (default: this
folder), each atomically.

``--rows`` selects rows: a key of :data:`claims.ROWS` (``squeeze:dla``, ``music:tts-4``...) or,
as before, any preset or baseline name, ``NAME:text-only`` dropping the references. It prints
each metric's mean and 95 % interval per subject count, one block per metric so rows line up,
and writes the two files only when ``--out`` is given. ``--subjects`` replaces every row's
subject counts. Each preset + options pipeline is built once; rows with the same settings
share one measurement.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling modules, also when this file is imported by path
    sys.path.insert(0, str(HERE))

import claims  # noqa: E402
from claims import Row  # noqa: E402

from smg_sdk.errors import RequestError, SMGError  # noqa: E402

MARKDOWN, RESULTS = "SUBJECTWORLD.md", "subjectworld_results.json"
FULL_SAMPLES, QUICK_SAMPLES = 32, 8


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES} samples per subject count")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"held-out requests per subject count (default {FULL_SAMPLES}; --quick {QUICK_SAMPLES})")
    parser.add_argument("--subjects", default=None, help="subject counts for every row (default: each row's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="+", default=None, help="row keys or PRESET[:text-only] (default: every row)")
    parser.add_argument("--out", default=None, help="folder for the two files (default: benchmarks/)")
    parser.add_argument("--from-json", default=None, help="rewrite the markdown from a saved results file")
    return parser.parse_args(argv)


def select_rows(tokens: Sequence[str] | None) -> list[Row]:
    """The claim rows named by ``tokens`` (keys, or ``PRESET[:text-only]``); every row for None."""
    if tokens is None:
        return list(claims.ROWS)
    from smg_sdk.eval.world_eval import BASELINES
    from smg_sdk.plugins.manager import get_registry

    known, presets = claims.by_key(), set(get_registry().names("preset")) | set(BASELINES)
    rows = []
    for token in tokens:
        preset, _, flag = token.partition(":")
        if token in known:
            rows.append(known[token])
        elif preset in presets and flag in ("", "text-only") and not (flag and preset in BASELINES):
            rows.append(Row(token, "other (--rows)", token, preset, no_references=bool(flag)))
        else:
            raise RequestError(f"--rows: unknown row {token!r}; use a key of benchmarks/claims.py "
                               f"({', '.join(known)}) or a preset name, optionally NAME:text-only.")
    return rows


def check_samples(samples: int | None, quick: bool) -> int:
    """``--samples`` (or the default for the mode), checked."""
    value = samples if samples is not None else QUICK_SAMPLES if quick else FULL_SAMPLES
    if value < 1:
        raise RequestError(f"--samples must be a whole number >= 1, got {value}.")
    return value


class Measurer:
    """Evaluates rows one subject count at a time, building each preset + options pipeline once
    and measuring each (settings, k) once."""

    def __init__(self, samples: int, seed: int, progress: bool = True):
        self.samples, self.seed, self.progress = samples, seed, progress
        self.pipelines: dict[str, Any] = {}
        self.done: dict[tuple[str, int], dict[str, Any]] = {}

    def pipeline(self, row: Row):
        from smg_sdk.eval.world_eval import BASELINES
        from smg_sdk.pipeline import SubjectPipeline

        if row.preset in BASELINES:
            return None
        key = json.dumps([row.preset, row.options], sort_keys=True)
        if key not in self.pipelines:
            self.pipelines[key] = SubjectPipeline.from_preset(row.preset, **row.options)
        return self.pipelines[key]

    def count(self, row: Row, k: int) -> dict[str, Any]:
        """The ``evaluate`` payload of ``row`` at ``k`` subjects."""
        from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate

        key = (json.dumps(row.settings(), sort_keys=True), k)
        if key not in self.done:
            config = WorldEvalConfig(row.preset, (k,), self.samples, self.seed, no_references=row.no_references,
                                     options=row.options, candidates=row.candidates, aligned=row.aligned)
            start = time.perf_counter()
            self.done[key] = evaluate(config, progress=False, pipeline=self.pipeline(row)).payload
            if self.progress:
                print(f"  {row.key} k={k}: {self.samples} requests in {time.perf_counter() - start:.1f} s", flush=True)
        return self.done[key]

    def row(self, row: Row, counts: Sequence[int]) -> dict[str, Any]:
        """``row``'s report entry: its definition, its weights and the merged payload over ``counts``."""
        payloads = {k: self.count(row, k) for k in counts}
        payload = dict(next(iter(payloads.values())))
        payload["results"] = {str(k): p["results"][str(k)] for k, p in payloads.items()}
        payload["seconds_per_request"] = {str(k): p["seconds_per_request"][str(k)] for k, p in payloads.items()}
        state, weights = claims.weights_of(row)
        return {"key": row.key, "group": row.group, "label": row.label, "claim": row.claim,
                "settings": row.settings(), "cost_baseline": row.cost_baseline, "weights_state": state,
                "weights": weights, "payload": payload}


def measure(rows: Sequence[Row], samples: int, seed: int, counts: Sequence[int] | None) -> list[dict[str, Any]]:
    """Every row's report entry (see :meth:`Measurer.row`), with progress on stdout."""
    from smg_sdk.cli import _quiet_loading

    _quiet_loading()
    measurer = Measurer(samples, seed)
    out = []
    for i, row in enumerate(rows):
        print(f"[{i + 1}/{len(rows)}] {row.group}: {row.label}", flush=True)
        out.append(measurer.row(row, counts or row.subjects))
    return out


def header(argv: Sequence[str], samples: int, seed: int, quick: bool) -> dict[str, Any]:
    """The report's facts before the run: command, commit, date, machine, seed, samples."""
    import datetime

    from run_all import _git, machine

    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"command": shlex.join(["python", "benchmarks/subjectworld.py", *argv]), "commit": _git("rev-parse", "HEAD"),
            "dirty": dirty, "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "machine": machine(), "seed": seed, "samples": samples, "quick": quick}


def _cell(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return ""
    return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"


def _metrics(entries: Sequence[dict[str, Any]]) -> list[str]:
    from smg_sdk.eval.world_metrics import METRICS

    extra = {m for e in entries for k in e["payload"]["results"].values() for m in k} - set(METRICS)
    return [*METRICS, *sorted(extra)]


def _weights_cell(entry: dict[str, Any]) -> str:
    return {"untrained": "**untrained: seeded initial weights**", "trained": "trained",
            "no weights": "no weights"}[entry["weights_state"]]


def group_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """One group's markdown table: a line per (row, k), ``mean [lo, hi]`` per metric, seconds per request."""
    from smg_sdk.eval.world_metrics import LOWER_IS_BETTER

    metrics = _metrics(entries)
    by_key = {e["key"]: e for e in entries}
    ratio = any(e["cost_baseline"] for e in entries)
    head = ["row", "weights", "k", *(m + (" (lower)" if m in LOWER_IS_BETTER else "") for m in metrics),
            "s / request"] + ([f"cost vs `{next(e['cost_baseline'] for e in entries if e['cost_baseline'])}`"]
                              if ratio else [])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for entry in entries:
        payload = entry["payload"]
        for k, stats in payload["results"].items():
            seconds = payload["seconds_per_request"][k]
            cells = [entry["label"], _weights_cell(entry), k, *(_cell(stats.get(m)) for m in metrics), f"{seconds:.3f}"]
            if ratio:
                base = by_key.get(entry["cost_baseline"] or entry["key"])
                base_seconds = base["payload"]["seconds_per_request"].get(k) if base else None
                cells.append(f"{seconds / base_seconds:.2f}x" if base_seconds else "")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def can_and_cannot(report: dict[str, Any]) -> list[str]:
    """The "what this table can and cannot say" paragraph, from the report's facts."""
    entries = report["rows"]
    untrained = [e["label"] for e in entries if e["weights_state"] == "untrained"]
    trained = [e["label"] for e in entries if e["weights_state"] == "trained"]
    samples = report["header"]["samples"]
    lines = [f"- Every number is a mean over {samples} held-out requests per subject count with its 95 % "
             "bootstrap interval; two rows differ beyond sampling noise only where their intervals do not overlap."]
    if untrained:
        lines.append(f"- {len(untrained)} row(s) run their method on **seeded initial weights** (no SubjectWorld "
                     f"training yet): {'; '.join(untrained)}. They show the plugin running end to end on the tiny "
                     "stack, not the paper's method trained, so they can neither confirm nor refute its claim.")
    if trained:
        lines.append(f"- Rows whose method has SubjectWorld-trained weights: {'; '.join(trained)}. "
                     "Their weights column says what was trained; see README.md for how far.")
    lines += _facts_from_results(entries)
    if report["not_measured"]:
        lines.append(f"- {len(report['not_measured'])} variant(s) of the issue's table are not measured "
                     "(listed at the end): no preset runs them today, and no number stands in for them.")
    lines.append("- Seconds per request are medians of one run on the machine above (generation and the "
                 "verifier's ranking, not the scoring); ratios between them are measured in the same run.")
    return lines


def _facts_from_results(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Facts the numbers themselves state: metrics every model row scores 0 on, and oracle-ranked rows."""
    from smg_sdk.eval.world_metrics import LOWER_IS_BETTER

    models = [e for e in entries if e["weights"] != "no model"]
    lines = []
    for metric in _metrics(models) if models else []:
        means = [s[metric]["mean"] for e in models for s in e["payload"]["results"].values() if metric in s]
        if means and metric not in LOWER_IS_BETTER and max(means) == 0:
            lines.append(f"- `{metric}` is 0 for every model row at every subject count, so no claim about "
                         f"`{metric}` can show here.")
    aligned = [e["label"] for e in entries if e["settings"].get("aligned")]
    if aligned:
        lines.append(f"- {len(aligned)} row(s) run on the aligned set ({'; '.join(aligned)}): the same held-out scenes "
                     "with every subject its class's typical identity (`smg eval subjectworld --aligned`), so the "
                     "prompt's class word and the reference agree; every other row's subjects are held-out "
                     "identities, none of them typical (misaligned).")
    judged = [e["label"] for e in entries if e["settings"]["options"].get("verifier") == "scene-judge"]
    if judged:
        lines.append(f"- The rows ranked by the `scene-judge` verifier ({'; '.join(judged)}) choose among their "
                     "candidates with the same oracle that scores them (the judge reads the truth off the request: "
                     "the instruction parsed, the references read), so their gain is what a perfect verifier "
                     "gives, an upper bound for a real one.")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """``SUBJECTWORLD.md`` from a report (what ``subjectworld_results.json`` holds)."""
    head = report["header"]
    dirty = " (with uncommitted changes)" if head["dirty"] else ""
    lines = ["# SubjectWorld: issue 11's claims measured", "",
             "Generated by `benchmarks/subjectworld.py`; do not edit by hand. Metrics: `docs/subjectworld.md`.", "",
             f"- command: `{head['command']}`", f"- commit: {head['commit']}{dirty}", f"- date: {head['date']}",
             f"- seed: {head['seed']} (held-out SubjectWorld draws of seed {head['seed']}; request i is generated "
             f"with seed {head['seed']} * 1000003 + i)",
             f"- samples: {head['samples']} held-out requests per subject count and row"
             + (" (`--quick`)" if head["quick"] else ""), f"- wall time: {head['wall_seconds']:.0f} s",
             *[line for line in head["machine"] if not line.startswith(("- date", "- commit"))], "",
             "## What this table can and cannot say", "", *can_and_cannot(report)]
    for group in dict.fromkeys(e["group"] for e in report["rows"]):
        entries = [e for e in report["rows"] if e["group"] == group]
        lines += ["", f"## {group}", ""]
        claim = entries[0]["claim"]
        if claim != "-":
            lines += [f"Paper claim: {claim}.", ""]
        lines += [f"- **{e['label']}** (`{e['key']}`): `{_settings_text(e['settings'])}`; weights: {e['weights']}"
                  for e in entries]
        lines += ["", *group_table(entries)]
    if report["not_measured"]:
        lines += ["", "## Not measured, and why", "", "| group | variant | paper claim | why |", "| --- | --- | --- | --- |"]
        lines += [f"| {n['group']} | {n['label']} | {n['claim']} | {n['reason']} |" for n in report["not_measured"]]
    return "\n".join(lines) + "\n"


def _settings_text(settings: dict[str, Any]) -> str:
    parts = [settings["preset"], *(f"{k}={v!r}" for k, v in settings["options"].items())]
    parts += ["no_references=True"] * settings["no_references"]
    parts += [f"num_candidates={settings['candidates']}"] * (settings["candidates"] > 1)
    parts += ["--aligned (typical identities)"] * bool(settings.get("aligned"))
    return " ".join(parts)


def load_report(path: str) -> dict[str, Any]:
    """A saved ``subjectworld_results.json``; :class:`RequestError` naming ``--from-json`` if it is not one."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RequestError(f"--from-json {path}: cannot read a results file ({exc}).") from None
    if not isinstance(report, dict) or not {"header", "rows", "not_measured"} <= set(report):
        raise RequestError(f"--from-json {path}: not a {RESULTS} this script wrote (no header, rows, not_measured).")
    return report


def check_out(out: str | Path) -> None:
    """Fail before any work if ``--out`` is a file or cannot be written (a missing folder is made)."""
    import tempfile

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RequestError(f"--out {out}: is a file; pass a folder for {MARKDOWN} and {RESULTS}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise RequestError(f"--out {out}: cannot write there ({exc.strerror}); choose another folder.") from None


def write_outputs(report: dict[str, Any], out: str | Path, markdown_only: bool = False) -> Path:
    """``out/SUBJECTWORLD.md`` and (unless ``markdown_only``) ``out/subjectworld_results.json``, each atomically."""
    from smg_sdk.atomic import atomic_file

    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if not markdown_only:
        atomic_file(folder / RESULTS, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1) + "\n"))
    atomic_file(folder / MARKDOWN, lambda tmp: Path(tmp).write_text(render_markdown(report)))
    return folder


def print_side_by_side(entries: Sequence[dict[str, Any]], samples: int) -> None:
    """Each metric's mean and interval per subject count, one block per metric so rows line up."""
    from smg_sdk.eval.world_metrics import LOWER_IS_BETTER

    counts = sorted({int(k) for e in entries for k in e["payload"]["results"]})
    width = max(len(e["key"]) for e in entries)
    for metric in _metrics(entries):
        print(f"\n{metric}{' (lower is better)' if metric in LOWER_IS_BETTER else ''}, {samples} samples per k")
        print(" " * width + "".join(f"  k={k:<14d}" for k in counts))
        for e in entries:
            cells = [e["payload"]["results"].get(str(k), {}).get(metric) for k in counts]
            print(e["key"].ljust(width) + "".join(
                f"  {c['mean']:.3f} [{c['ci95'][0]:.2f},{c['ci95'][1]:.2f}]" if c else " " * 18 for c in cells))


def run(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    out = args.out if args.out is not None else (None if args.rows else str(HERE))
    if args.from_json:
        report = load_report(args.from_json)
        print(f"wrote {write_outputs(report, out or HERE, markdown_only=True) / MARKDOWN}")
        return
    from smg_sdk.cli_subjectworld import check_counts

    samples = check_samples(args.samples, args.quick)
    counts = check_counts(args.subjects) if args.subjects is not None else None
    rows = select_rows(args.rows)
    if out is not None:
        check_out(out)
    facts, start = header(argv, samples, args.seed, args.quick), time.perf_counter()
    entries = measure(rows, samples, args.seed, counts)
    facts["wall_seconds"] = round(time.perf_counter() - start, 1)
    report = {"header": facts, "rows": entries,
              "not_measured": [] if args.rows else [vars(n) for n in claims.NOT_MEASURED]}
    print_side_by_side(entries, samples)
    if out is not None:
        folder = write_outputs(report, out)
        print(f"\nwrote {folder / MARKDOWN} and {folder / RESULTS} ({report['header']['wall_seconds']:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run(argv)
    except SMGError as exc:
        print(f"subjectworld.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
