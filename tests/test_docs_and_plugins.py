"""Guards for plugin authors: documented hooks, exercised hooks, and a tutorial that works."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smg_sdk.plugins import hookspecs
from smg_sdk.plugins.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
HOOKS_DOC = (ROOT / "docs" / "hooks.md").read_text()
TUTORIAL = (ROOT / "docs" / "writing-a-plugin.md").read_text()
EXAMPLE = ROOT / "examples" / "custom_plugin"
PUBLIC_REGISTRY_METHODS = [
    name for name, member in inspect.getmembers(Registry, inspect.isfunction)
    if not name.startswith("_") and name not in ("registering", "forget")
]


def hookspec_functions():
    return [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(f, "smg_sdk_spec")]


def signature_text(function) -> str:
    text = re.sub(r"['\"]", "", str(inspect.signature(function))).replace("self, ", "")
    return f"{function.__name__}{text}"


def test_every_hookspec_is_documented_with_its_signature():
    specs = hookspec_functions()
    assert specs, "no hookspecs found"
    for spec in specs:
        assert f"`{signature_text(spec)}`" in HOOKS_DOC, signature_text(spec)


@pytest.mark.parametrize("method", PUBLIC_REGISTRY_METHODS)
def test_every_registry_method_is_documented(method):
    assert f"`{signature_text(getattr(Registry, method))}`" in HOOKS_DOC, signature_text(getattr(Registry, method))


def test_every_hookspec_is_exercised_by_a_test():
    tests = [p.read_text() for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name]
    for spec in hookspec_functions():
        assert any(f"def {spec.__name__}(" in text for text in tests), f"no test implements {spec.__name__}"


def tutorial_files() -> dict[str, str]:
    return dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", TUTORIAL, flags=re.S))


def test_tutorial_code_is_the_example_plugin():
    files = tutorial_files()
    assert set(files) == {"pyproject.toml", "src/smg_spotlight/__init__.py", "src/smg_spotlight/emphasis.py",
                          "src/smg_spotlight/spotlight.py", "tests/test_spotlight.py"}
    for rel, text in files.items():
        assert (EXAMPLE / rel).read_text() == text, f"{rel} in the tutorial differs from examples/custom_plugin"


def test_following_the_tutorial_gives_a_working_plugin(tmp_path):
    """Write the tutorial's files into an empty folder, install them, discover, run its tests."""
    folder = tmp_path / "smg-spotlight"
    for rel, text in tutorial_files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(site), str(folder)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    listing = subprocess.run([sys.executable, "-m", "smg_sdk.cli", "plugins", "--json"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    plugin = {p["name"]: p for p in json.loads(listing.stdout)}["spotlight"]
    assert plugin["source"] == "entry point" and plugin["version"] == "0.2.0"
    assert plugin["components"] == {"aggregator": ["word-emphasis"], "rule": ["spotlight"]}
    from conftest import make_image

    make_image(0).save(tmp_path / "dog.png")
    generate = subprocess.run(
        [sys.executable, "-m", "smg_sdk.cli", "generate", "--prompt", "a photo of <1>", "--subject",
         f"{tmp_path / 'dog.png'}:dog", "--aggregator", "word-emphasis", "--rule", "spotlight", "--steps", "2",
         "--out", str(tmp_path / "spotlit.png"), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert generate.returncode == 0, generate.stderr[-2000:]
    assert (tmp_path / "spotlit.png").is_file()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
                           capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    assert tests.returncode == 0, tests.stdout[-2000:] + tests.stderr[-2000:]
    assert "5 passed" in tests.stdout
