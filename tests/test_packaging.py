"""Packaging guards: every package folder is listed, and the built-in plugins load via entry points."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, name in (("smg_sdk", "smg_sdk"), ("plugins", "smg_plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]))
    assert found == listed, f"unlisted: {sorted(found - listed)}, stale: {sorted(listed - found)}"


def test_builtin_plugins_come_from_entry_points():
    from smg_sdk.plugins import list_plugins, reset_plugins

    reset_plugins()
    infos = {p.name: p for p in list_plugins()}
    for name in ("squeeze-mllm", "music", "aligngen"):
        assert name in infos, f"{name} not discovered; reinstall with pip install -e ."
        assert infos[name].source == "entry point" and infos[name].error is None
