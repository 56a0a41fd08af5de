"""Issue 11's claims table: ``benchmarks/claims.py`` (the rows) and ``benchmarks/subjectworld.py`` (the harness)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ISSUE_GROUPS = {"calibration", "reference LoRA", "Squeeze: aggregation", "Squeeze: schedule", "MUSIC: planning",
                "MUSIC: test-time scaling", "AlignGen", "composed"}
"""The groups of issue 11's table (its "what it tests" column)."""


@pytest.fixture()
def harness(monkeypatch):
    """``benchmarks/subjectworld.py`` imported by path (``claims`` beside it)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("subjectworld_harness", BENCH / "subjectworld.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_cover_every_group_of_the_issue_and_name_real_presets(harness):
    from smg_sdk.eval.world_eval import BASELINES
    from smg_sdk.plugins.manager import get_registry

    claims = harness.claims
    assert set(claims.GROUPS) == ISSUE_GROUPS
    assert claims.groups_covered() == ISSUE_GROUPS  # a group dropped from both lists fails here
    assert {row.group for row in claims.ROWS} | {n.group for n in claims.NOT_MEASURED} <= ISSUE_GROUPS
    keys = [row.key for row in claims.ROWS]
    assert len(keys) == len(set(keys))
    registry = get_registry()
    for row in claims.ROWS:
        assert row.subjects and all(1 <= k <= 6 for k in row.subjects)
        if row.preset in BASELINES:
            assert not row.options
            continue
        inspect.signature(registry.get("preset", row.preset)).bind(**row.options)  # every option is taken
        assert row.cost_baseline is None or row.cost_baseline in keys
    assert [r.candidates for r in claims.ROWS if r.group == "MUSIC: test-time scaling"] == [1, 2, 4, 8]
    assert all(n.reason for n in claims.NOT_MEASURED)
    composed = [r for r in claims.ROWS if r.group == "composed"]
    assert [r.options for r in composed] == [{}, {"squeeze": False}, {"music": False}, {"aligngen": False}]


def test_weights_column_comes_from_the_files_present(harness, monkeypatch, tmp_path):
    import smg_plugins.aligngen.weights as aligngen_weights
    import smg_plugins.squeeze_mllm.preset as squeeze_preset

    claims, rows = harness.claims, harness.claims.by_key()
    monkeypatch.setattr(squeeze_preset, "WEIGHTS", tmp_path)
    monkeypatch.setattr(aligngen_weights, "WEIGHTS", tmp_path / "aligngen")
    assert claims.weights_of(rows["squeeze:lap"])[0] == claims.UNTRAINED
    (tmp_path / "lap.safetensors").write_bytes(b"")  # the flat layout of before: not read
    assert claims.weights_of(rows["squeeze:lap"])[0] == claims.UNTRAINED
    (tmp_path / "lap").mkdir()
    (tmp_path / "lap" / "lap.safetensors").write_bytes(b"")
    assert claims.weights_of(rows["squeeze:lap"])[0] == claims.TRAINED
    assert claims.weights_of(rows["squeeze:dla"])[0] == claims.UNTRAINED  # another aggregator's folder
    assert claims.weights_of(rows["aligngen:sstar-dem-mask:misaligned"])[0] == claims.UNTRAINED
    assert claims.weights_of(rows["composed:all"])[0] == claims.UNTRAINED  # its parts' weights are missing
    shipped = aligngen_weights.weight_files(tmp_path / "aligngen" / "sstar-dem-mask", sstar_dem=True)
    for file in shipped.values():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"")
    assert claims.weights_of(rows["aligngen:sstar-dem-mask:aligned"])[0] == claims.TRAINED
    assert claims.weights_of(rows["aligngen:lora-only:misaligned"])[0] == claims.UNTRAINED  # another variant's
    assert claims.weights_of(rows["composed:no-squeeze"])[0] == claims.TRAINED
    assert claims.weights_of(rows["composed:all"])[0] == claims.UNTRAINED  # Squeeze's DLA is still missing
    assert claims.weights_of(rows["music:trained-planner"])[0] == claims.TRAINED
    assert claims.weights_of(rows["ground-truth"]) == (claims.NO_WEIGHTS, "no model")


def test_aligngen_rows_are_the_two_by_two_ablation_on_misaligned_and_aligned_prompts(harness):
    claims = harness.claims
    rows = [r for r in claims.ROWS if r.group == "AlignGen"]
    variants = {(r.options["sstar_dem"], r.options["mask"]) for r in rows}
    assert variants == {(True, True), (True, False), (False, True), (False, False)}
    assert sorted((r.options["sstar_dem"], r.options["mask"], r.aligned) for r in rows) == sorted(
        (a, b, c) for a, b in variants for c in (False, True))
    assert all(r.preset == "aligngen-tiny" and r.claim == claims.CLAIM_ALIGN for r in rows)
    assert all(r.settings()["aligned"] == r.aligned and r.key.endswith(":aligned") == r.aligned for r in rows)
    assert not [n for n in claims.NOT_MEASURED if n.group == "AlignGen"]  # every variant is now a row
    measurer = harness.Measurer(samples=1, seed=0, progress=False)
    row = claims.by_key()["aligngen:lora-only:aligned"]
    payload = measurer.count(row, 1)
    assert payload["aligned"] is True and payload["identities"] == "typical"
    assert "--aligned" in harness._settings_text(row.settings())


def test_aligngen_weights_column_reads_each_variants_shipped_folder(harness, monkeypatch, tmp_path):
    import smg_plugins.aligngen.weights as aligngen_weights

    claims, rows = harness.claims, harness.claims.by_key()
    monkeypatch.setattr(aligngen_weights, "WEIGHTS", tmp_path)
    full, baseline = rows["aligngen:sstar-dem-mask:aligned"], rows["aligngen:lora-only:misaligned"]
    assert claims.weights_of(full)[0] == claims.weights_of(baseline)[0] == claims.UNTRAINED
    for name in ("aligngen.json", "aligngen-ref/pytorch_lora_weights.safetensors"):
        (tmp_path / "lora-only" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lora-only" / name).write_bytes(b"")
        (tmp_path / "sstar-dem-mask" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sstar-dem-mask" / name).write_bytes(b"")
    state, text = claims.weights_of(baseline)
    assert state == claims.TRAINED and "plugins/aligngen/weights/lora-only/" in text and "SigLIP" not in text
    assert claims.weights_of(full)[0] == claims.UNTRAINED  # no S* or DEM file yet
    (tmp_path / "sstar-dem-mask" / "sstar.safetensors").write_bytes(b"")
    (tmp_path / "sstar-dem-mask" / "dem.safetensors").write_bytes(b"")
    assert claims.weights_of(full)[0] == claims.TRAINED
    assert claims.weights_of(rows["aligngen:sstar-dem:misaligned"])[0] == claims.UNTRAINED  # another variant


def _stat(mean: float, lo: float, hi: float) -> dict:
    return {"mean": mean, "ci95": [lo, hi]}


def _entry(key: str, group: str, label: str, state: str, results: dict, seconds: dict, baseline: str | None = None,
           options: dict | None = None) -> dict:
    return {"key": key, "group": group, "label": label, "claim": "a claim", "cost_baseline": baseline,
            "settings": {"preset": "tiny", "options": options or {}, "no_references": False, "candidates": 1},
            "weights_state": state, "weights": f"{state} weights", "payload": {
                "preset": "tiny", "results": results, "seconds_per_request": seconds}}


def _fabricated_report() -> dict:
    metrics = ("identity", "instruction", "omission", "blending", "copy_paste", "similarity")
    def results(base: float) -> dict:
        return {str(k): {m: _stat(base + 0.01 * i + 0.1 * k, base, base + 0.5) for i, m in enumerate(metrics)}
                for k in (1, 3)}
    return {"header": {"command": "python benchmarks/subjectworld.py --quick", "commit": "abc123", "dirty": False,
                       "date": "2026-11-30 10:00 UTC", "machine": ["- machine: test"], "seed": 7, "samples": 8,
                       "quick": True, "wall_seconds": 12.0},
            "rows": [_entry("a", "calibration", "row A", "untrained", results(0.1234), {"1": 0.25, "3": 0.5}),
                     _entry("b", "MUSIC: test-time scaling", "row B", "trained", results(0.05678), {"1": 0.5, "3": 2.0}),
                     _entry("c", "MUSIC: test-time scaling", "row C", "trained", results(0.2), {"1": 2.0, "3": 3.0},
                            baseline="b")],
            "not_measured": [{"group": "composed", "label": "all three", "claim": "c", "reason": "no preset"}]}


def _table_rows(markdown: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith(f"| {label} |")]


def test_markdown_tables_hold_the_payload_numbers(harness):
    report = _fabricated_report()
    markdown = harness.render_markdown(report)
    header = next(line for line in markdown.splitlines() if line.startswith("| row | weights | k |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for entry in report["rows"]:
        lines = _table_rows(markdown, entry["label"])
        assert [line[2] for line in lines] == list(entry["payload"]["results"])
        for line in lines:
            k, cells = line[2], dict(zip(columns, line))
            for metric, stat in entry["payload"]["results"][k].items():
                column = next(c for c in columns if c.split(" ")[0] == metric)
                mean, lo, hi = map(float, re.findall(r"[\d.]+", cells[column]))
                assert (mean, lo, hi) == tuple(round(v, 3) for v in (stat["mean"], *stat["ci95"]))
            assert float(cells["s / request"]) == entry["payload"]["seconds_per_request"][k]
    c_lines = _table_rows(markdown, "row C")
    assert [line[-1] for line in c_lines] == ["4.00x", "1.50x"]  # row C's seconds over row B's, per k
    assert "**untrained: seeded initial weights**" in _table_rows(markdown, "row A")[0][1]
    assert "row A" in markdown.split("## What this table can and cannot say")[1].split("##")[0]
    assert "| composed | all three | c | no preset |" in markdown
    assert "abc123" in markdown and "`python benchmarks/subjectworld.py --quick`" in markdown and "seed: 7" in markdown


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env_path = f"{ROOT}:{ROOT / '.pp'}"
    return subprocess.run([sys.executable, str(BENCH / "subjectworld.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**__import__("os").environ, "PYTHONPATH": env_path})


def _repo_copies() -> dict[str, bytes | None]:
    return {name: (BENCH / name).read_bytes() if (BENCH / name).exists() else None
            for name in ("SUBJECTWORLD.md", "subjectworld_results.json")}


def test_a_subset_run_writes_both_files_to_out_and_leaves_the_repo_copy(tmp_path, harness):
    before = _repo_copies()
    run = _bench("--rows", "ground-truth", "copy-paste", "--samples", "2", "--subjects", "1",
                 "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "subjectworld_results.json").read_text())
    assert [e["key"] for e in report["rows"]] == ["ground-truth", "copy-paste"]
    truth = report["rows"][0]["payload"]["results"]["1"]
    assert truth["identity"]["mean"] == 1.0 and truth["omission"]["mean"] == 0.0
    assert report["header"]["samples"] == 2 and "--rows ground-truth copy-paste" in report["header"]["command"]
    markdown = (tmp_path / "out" / "SUBJECTWORLD.md").read_text()
    assert markdown == harness.render_markdown(report)
    assert _table_rows(markdown, "ground truth (the target renders)")[0][3] == "1.000 [1.000, 1.000]"
    assert harness.main(["--from-json", str(tmp_path / "out" / "subjectworld_results.json"),
                         "--out", str(tmp_path / "re")]) == 0
    assert (tmp_path / "re" / "SUBJECTWORLD.md").read_text() == markdown
    assert _repo_copies() == before


def test_rows_without_out_print_side_by_side_and_write_nothing(tmp_path, harness, monkeypatch, capsys):
    before = _repo_copies()
    monkeypatch.chdir(tmp_path)
    assert harness.main(["--rows", "ground-truth", "copy-paste", "--samples", "1", "--subjects", "1"]) == 0
    block = capsys.readouterr().out.split("\ninstruction, 1 samples per k\n")[1].splitlines()
    assert block[1].startswith("ground-truth ") and "1.000 [1.00,1.00]" in block[1]
    assert block[2].startswith("copy-paste ") and "1.000" not in block[2]  # a pasted reference follows no instruction
    assert not list(tmp_path.iterdir()) and _repo_copies() == before


@pytest.mark.parametrize("args, says", [
    (["--rows", "no-such-row"], "--rows"),
    (["--rows", "copy-paste:text-only"], "--rows"),
    (["--samples", "0", "--rows", "ground-truth"], "--samples"),
    (["--subjects", "1,9", "--rows", "ground-truth"], "--subjects"),
    (["--from-json", "missing.json"], "--from-json"),
])
def test_bad_input_is_one_line_naming_the_argument(tmp_path, harness, monkeypatch, capsys, args, says):
    monkeypatch.chdir(tmp_path)
    assert harness.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("subjectworld.py: error:") and says in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_eval_records_seconds_per_request_and_checks_candidates():
    from smg_sdk.errors import RequestError
    from smg_sdk.eval.world_eval import WorldEvalConfig, evaluate

    payload = evaluate(WorldEvalConfig("ground-truth", (1, 2), 2), progress=False).payload
    assert set(payload["seconds_per_request"]) == {"1", "2"} and payload["candidates"] == 1
    assert all(0 <= s < 5 for s in payload["seconds_per_request"].values())
    for bad in (0, 1.5, True):
        with pytest.raises(RequestError, match="candidates"):
            WorldEvalConfig("tiny", candidates=bad)
    with pytest.raises(RequestError, match="baseline"):
        WorldEvalConfig("copy-paste", candidates=2)
