"""Architecture rules that keep the code easy to see: the FLUX boundary and short functions.

- Only ``smg_sdk.backends.flux`` knows FLUX: no other module of ``smg_sdk`` imports one of its
  modules, or a FLUX module of diffusers, at any level (module or function). Two places may
  name it, each for a stated reason (``ALLOWED``).
- ``import smg_sdk`` loads no FLUX module at all.
- Every function in ``smg_sdk/`` is under 60 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "smg_sdk"
FLUX_PACKAGE = PACKAGE / "backends" / "flux"
ALLOWED = {
    "smg_sdk/__init__.py": "the public API re-exports FluxBackend, lazily",
    "smg_sdk/builtin.py": "the core's own plugin wires the in-tree FLUX backend into the registry",
}
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import``/``from ... import`` in ``path`` names, resolved to absolute names."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            out += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _is_flux(module: str) -> bool:
    return module.startswith("smg_sdk.backends.flux") or (
        module.startswith("diffusers") and "flux" in module.lower()
    )


def _core_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if FLUX_PACKAGE not in p.parents]


def test_core_modules_import_no_flux_module():
    offenders = []
    for path in _core_files():
        where = path.relative_to(PACKAGE.parent).as_posix()
        if where in ALLOWED:
            continue
        offenders += [f"{where}:{line} imports {module}" for line, module in _imported_modules(path) if _is_flux(module)]
    assert not offenders, "FLUX code outside smg_sdk/backends/flux/:\n" + "\n".join(offenders)


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    """The rule cannot pass vacuously: it resolves the import forms the code base uses."""
    path = PACKAGE / "attention" / "_probe_for_test.py"
    path.write_text("def f():\n    from ..backends.flux.latents import pack_latents\n    import diffusers.pipelines.flux\n")
    try:
        found = [m for _, m in _imported_modules(path) if _is_flux(m)]
    finally:
        path.unlink()
    assert "smg_sdk.backends.flux.latents" in found and "diffusers.pipelines.flux" in found


def test_importing_the_package_loads_no_flux_module():
    code = ("import sys, smg_sdk, smg_sdk.pipeline, smg_sdk.sampling, smg_sdk.training;"
            "print([m for m in sys.modules if m.startswith('smg_sdk.backends.flux') or "
            "(m.startswith('diffusers') and 'flux' in m)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_functions_are_short(path: Path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 >= MAX_FUNCTION_LINES
    ]
    assert not long, f"functions of {MAX_FUNCTION_LINES}+ lines in {path.name}: {long}"
