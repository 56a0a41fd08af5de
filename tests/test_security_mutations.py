"""Random manifest mutations: loading ends in an SMGError or a correct pipeline, nothing else.

Hypothesis edits the manifest of a tiny saved pipeline (replace a value anywhere, delete or
add a key, nudge a number, swap in a hostile string, cut or flip the raw text) and loads it.
The only acceptable outcomes are an :class:`SMGError` or a pipeline with every tensor
materialised; writes outside the temporary folder and canary code are failures too.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from security_helpers import Canary, audited, build_saved_pipeline, writes_outside
from smg_sdk import SubjectPipeline
from smg_sdk.errors import SMGError

EXAMPLES = 500
HOSTILE = [
    "", ".", "..", "../outside.safetensors", "/etc/passwd", "~", "~/x", "C:\\x", "\x00", "a" * 5000,
    "sys:exit", "os:system", "smg_canary_mod:build", "builtins:exec", "scene-judge", "flux", "tiny", "nope",
    "trust_remote_code", "base", "backend", "components/x.safetensors", "adapters/subject/pytorch_lora_weights.bin",
    "base/../../x.safetensors", "torch.float64", "F8_E4M3", "cached", "concat", "omini", "1e999", "NaN",
    "/tmp/\x00x", "model_path", "adapters/../../../etc",
]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 16, 63, 64, 4096, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(HOSTILE),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["trust_remote_code", "weights", "name"])),
                      inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, prefix + (key,)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, prefix + (i,)))
    return out


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _nudge(value: Any, data: st.DataObject) -> Any:
    """A small, same-type change: what a careless edit or a bit flip in a number would do."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + data.draw(st.sampled_from([-value - 1, -1, 1, 15, 2**31, -(2**63)]))
    if isinstance(value, float):
        return value * data.draw(st.sampled_from([-1.0, 0.0, 1e308, 0.5]))
    if isinstance(value, str):
        return data.draw(st.sampled_from([value + "x", value[:-1], value.upper(), "../" + value, "/" + value]))
    if isinstance(value, list) and value:
        return value[:-1] if data.draw(st.booleans()) else value + value[-1:]
    return data.draw(json_values)


def mutate_text(original: dict[str, Any], data: st.DataObject) -> str:
    """The manifest text after one random mutation."""
    op = data.draw(st.sampled_from(["replace", "nudge", "nudge", "delete", "add", "truncate", "flip"]))
    if op == "truncate":
        text = json.dumps(original)
        return text[: data.draw(st.integers(0, len(text) - 1))]
    if op == "flip":
        raw = bytearray(json.dumps(original).encode())
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        return raw.decode("utf-8", errors="replace")
    manifest = json.loads(json.dumps(original))
    paths = _paths(manifest)
    tensors = [p for p in paths if p[:1] == ("backend_tensors",)]  # thousands of entries: drawn half the time,
    others = [p for p in paths if p[:1] != ("backend_tensors",)]  # so the settings and components are reached too
    path = data.draw(st.sampled_from(tensors if data.draw(st.booleans()) else others))
    if op == "add":
        target = _get(manifest, path)
        if isinstance(target, dict):
            target[data.draw(st.one_of(st.text(max_size=10), st.sampled_from(HOSTILE)))] = data.draw(json_values)
        elif isinstance(target, list):
            target.append(data.draw(json_values))
        else:
            op = "replace"
    if not path:
        return json.dumps(data.draw(json_values)) if op in ("replace", "nudge", "delete") else json.dumps(manifest)
    parent, key = _get(manifest, path[:-1]), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = data.draw(json_values)
    elif op == "nudge":
        parent[key] = _nudge(parent[key], data)
    return json.dumps(manifest)


def check_loaded(pipe: Any) -> None:
    """What a correct load means: a pipeline whose modules all hold real tensors."""
    import torch

    assert isinstance(pipe, SubjectPipeline)
    backend = pipe.backend
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(backend, name)
        assert not any(t.is_meta for t in [*module.parameters(), *module.buffers()]), name
    for component in pipe.encoders + pipe.aggregators:
        if isinstance(component, torch.nn.Module):
            assert not any(t.is_meta for t in component.parameters())


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return build_saved_pipeline(tmp_path_factory.mktemp("mutations") / "saved")


def test_random_manifest_mutations_give_smg_error_or_a_correct_load(saved, tmp_path, monkeypatch):
    original_text = (saved / "smg_pipeline.json").read_text()
    original = json.loads(original_text)
    canary = Canary(tmp_path / "canary")
    monkeypatch.syspath_prepend(str(canary.code))
    monkeypatch.chdir(tmp_path)
    outcomes: Counter[str] = Counter()
    others: list[str] = []
    outside: list[tuple[str, str]] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def attempt(data: st.DataObject) -> None:
        text = mutate_text(original, data)
        (saved / "smg_pipeline.json").write_text(text)
        try:
            with audited() as events:
                try:
                    pipe = SubjectPipeline.from_pretrained(saved)
                except SMGError:
                    outcomes["SMGError"] += 1
                except BaseException as exc:  # noqa: BLE001 - any other outcome is what this test hunts
                    outcomes["other"] += 1
                    others.append(f"{type(exc).__name__}: {str(exc)[:200]} <- {text[:300]}")
                else:
                    check_loaded(pipe)
                    outcomes["loaded"] += 1
            outside.extend(writes_outside(events, saved.parent, tmp_path))
        finally:
            (saved / "smg_pipeline.json").write_text(original_text)

    try:
        attempt()
    finally:
        sys.modules.pop("smg_canary_mod", None)
    total = sum(outcomes.values())
    print(f"\nmanifest mutations tried: {total}; outcomes: {dict(outcomes)}")
    assert not others, others[:5]
    assert not outside, outside[:5]
    assert not canary.ran
    assert total >= EXAMPLES
    assert outcomes["loaded"] > 0 and outcomes["SMGError"] > 0  # both branches were exercised
