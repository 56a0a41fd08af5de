"""The public API: ``smg_sdk.__all__`` is what a plugin may import, and plugins import nothing else.

The in-tree plugins (``plugins/``) and the example third-party plugin
(``examples/custom_plugin/``) may only write ``import smg_sdk`` or ``from smg_sdk import X``
with ``X`` in ``smg_sdk.__all__``. Plugin *tests* may also use the conformance kit,
``smg_sdk.testing``, which exists for them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smg_sdk

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_TREES = [ROOT / "plugins", ROOT / "examples" / "custom_plugin"]
TEST_KIT = "smg_sdk.testing"


def _plugin_files() -> list[Path]:
    return sorted(p for tree in PLUGIN_TREES for p in tree.rglob("*.py"))


def _violations(path: Path) -> list[str]:
    is_test = "tests" in path.relative_to(ROOT).parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("smg_sdk.") and not (is_test and a.name == TEST_KIT)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "smg_sdk":
                found += [f"smg_sdk.{a.name}" for a in node.names if a.name not in smg_sdk.__all__]
            elif node.module.startswith("smg_sdk.") and not (is_test and node.module == TEST_KIT):
                found.append(node.module)
    return [f"{path.relative_to(ROOT)}:{name}" for name in found]


def test_every_exported_name_resolves():
    missing = [name for name in smg_sdk.__all__ if not hasattr(smg_sdk, name)]
    assert not missing and len(set(smg_sdk.__all__)) == len(smg_sdk.__all__)
    assert set(smg_sdk._LAZY) <= set(smg_sdk.__all__)  # every lazily loaded name is also declared


@pytest.mark.parametrize("path", _plugin_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_plugins_import_only_the_public_api(path: Path):
    bad = _violations(path)
    assert not bad, "imports outside smg_sdk.__all__ (export the name, or use one that is):\n" + "\n".join(bad)


def test_the_checker_catches_a_private_import(tmp_path):
    probe = ROOT / "plugins" / "_probe_public_api.py"
    probe.write_text("from smg_sdk.attention.masks import JointAttentionMask\nfrom smg_sdk import NotExported\n")
    try:
        bad = _violations(probe)
    finally:
        probe.unlink()
    assert len(bad) == 2
