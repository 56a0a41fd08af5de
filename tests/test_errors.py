"""Errors users can cause are SMGError subclasses (still ValueError/KeyError where callers catch those),
and the hygiene the code base keeps: one placeholder regex, no types <-> plans import cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.data.subjectworld.identities import Identity, split_identities
from smg_sdk.data.subjectworld.scenes import parse_instruction
from smg_sdk.errors import ConfigError, DataError, DataLookupError, PlanError, SMGError
from smg_sdk.eval.dreambench import DreamBench
from smg_sdk.eval.oracle import Oracle
from smg_sdk.gallery import contact_sheet
from smg_sdk.testing.strategies import plans

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "smg_sdk").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])

# Raised inside a parser and turned into a user-facing error by its caller in the same module.
INTERNAL_RAISES = {
    ("smg_sdk/training/checkpoint.py", "_decode"),  # -> ModelLoadError in load_state
    ("smg_sdk/manifest.py", "_no_constants"),  # json hooks -> ManifestError in _parse
    ("smg_sdk/manifest.py", "_no_duplicates"),
}


@pytest.mark.parametrize("call, kinds", [
    (lambda: SubjectWorld(split="test"), (ConfigError, ValueError)),
    (lambda: SubjectWorld(side=100), (ConfigError, ValueError)),
    (lambda: Identity("no-such-shape", "red"), (DataError, ValueError)),
    (lambda: split_identities("validation"), (DataError, ValueError)),
    (lambda: parse_instruction("a <1> somewhere"), (DataError, ValueError)),
    (lambda: contact_sheet([]), (DataError, ValueError)),
    (lambda: Oracle().read(np.zeros((4, 4))), (DataError, ValueError)),
    (lambda: DreamBench(Path("."), []).get("dog"), (DataLookupError, KeyError)),
], ids=["world-split", "world-side", "identity", "identity-split", "instruction", "contact-sheet", "oracle",
        "dreambench"])
def test_user_errors_are_smg_errors_and_keep_their_builtin_base(call, kinds):
    with pytest.raises(SMGError) as info:
        call()
    assert all(isinstance(info.value, kind) for kind in kinds), type(info.value).__mro__
    message = str(info.value)
    assert message and "\n" not in message and not message.startswith("'")  # one line, no KeyError quoting


def test_plan_error_lives_in_errors():
    from smg_sdk import types

    assert issubclass(PlanError, SMGError) and issubclass(PlanError, ValueError)
    with pytest.raises(PlanError):
        types.Plan(cot=3)  # type: ignore[arg-type]


def test_plans_strategy_refuses_a_grid_too_small():
    @given(plans(num_subjects=5, grid=(2, 2)))
    @settings(max_examples=1)
    def draw(plan):
        pass

    with pytest.raises(DataError, match="num_subjects=5"):
        draw()


def _raises(path: Path):
    tree = ast.parse(path.read_text())
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                    if isinstance(target, ast.Name):
                        yield func.name, target.id, node.lineno


def test_no_bare_value_or_key_errors_reach_users():
    found = []
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        for func, name, line in _raises(path):
            if name in ("ValueError", "KeyError") and (rel, func) not in INTERNAL_RAISES:
                found.append(f"{rel}:{line} raises {name} in {func}()")
    assert not found, "raise an SMGError subclass instead:\n" + "\n".join(found)


def test_one_placeholder_regex():
    literal = re.compile(r"<\(?\\d\+?\)?>")  # <(\d+)>, <\d+> ... written out as a regex
    owners = [path.relative_to(ROOT).as_posix() for path in SOURCES if literal.search(path.read_text())]
    assert owners == ["smg_sdk/types.py"], owners


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_plans_does_not_import_types():
    imported = _imported_modules(ROOT / "smg_sdk" / "plans.py")
    assert not {".types", "smg_sdk.types"} & imported, imported
