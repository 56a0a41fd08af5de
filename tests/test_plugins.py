"""Plugin discovery, fault isolation, the registry and ``smg plugins``.

The third-party plugins here are real: a ``*.dist-info`` folder on ``sys.path`` that
``importlib.metadata`` discovers exactly as it would an installed distribution.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_sdk import cli
from smg_sdk.errors import PluginError, RegistryError, SMGError
from smg_sdk.plugins import (
    KINDS,
    PluginInfo,
    PluginLoadWarning,
    Registry,
    get_plugin_manager,
    get_registry,
    hookimpl,
    list_plugins,
    register_plugin,
    reset_plugins,
)

ROOT = Path(__file__).resolve().parents[1]
FAKE_MODULES = ("good_plugin", "bad_plugin", "dup_plugin")

GOOD = """
from smg_sdk.plugins.hookspecs import hookimpl

class GoodAgg:
    def __init__(self, k=1):
        self.k = k

@hookimpl
def smg_register(registry):
    registry.add_aggregator("good-agg", GoodAgg)
    registry.add_rule("good-rule", lambda **cfg: GoodAgg())
"""

BAD = """
raise RuntimeError("bad plugin exploded on import")
"""

DUP = """
from smg_sdk.plugins.hookspecs import hookimpl

@hookimpl
def smg_register(registry):
    registry.add_schedule("dup-only", dict)   # must be rolled back
    registry.add_aggregator("good-agg", dict)  # already owned by 'good'
"""


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with no plugins loaded, so tests cannot leak into each other."""
    monkeypatch.delenv("SMG_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reset_plugins()
    yield
    reset_plugins()


def install_fake_dist(folder: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str,
                      plugins: dict[str, tuple[str, str]]) -> None:
    """Write ``plugins`` (entry-point name -> (module, code)) as an installed distribution on sys.path."""
    for module, code in plugins.values():
        (folder / f"{module}.py").write_text(textwrap.dedent(code))
    info = folder / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[smg_sdk]\n" + "".join(f"{name} = {module}\n" for name, (module, _) in plugins.items())
    )
    monkeypatch.syspath_prepend(str(folder))  # also calls importlib.invalidate_caches()


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An 'installed' distribution ``fakedist 1.2.3`` with three plugins: good, bad, dup."""
    install_fake_dist(tmp_path, monkeypatch, "fakedist", "1.2.3", {
        "good": ("good_plugin", GOOD), "bad": ("bad_plugin", BAD), "dup": ("dup_plugin", DUP)})
    yield tmp_path
    for mod in FAKE_MODULES:
        sys.modules.pop(mod, None)


def _by_name(infos: list[PluginInfo]) -> dict[str, PluginInfo]:
    return {i.name: i for i in infos}


# -- discovery and fault isolation ---------------------------------------------------------


def test_entry_point_plugins_load_with_fault_isolation(fake_dist: Path) -> None:
    with pytest.warns(PluginLoadWarning) as record:
        registry = get_registry()
    infos = _by_name(list_plugins())

    good = infos["good"]
    assert (good.version, good.source, good.error) == ("1.2.3", "entry point", None)
    assert good.components == {"aggregator": ["good-agg"], "rule": ["good-rule"]}
    assert registry.owner("aggregator", "good-agg") == "good"
    assert registry.owner("rule", "good-rule") == "good"
    assert registry.build("aggregator", "good-agg", k=3).k == 3

    bad = infos["bad"]
    assert bad.source == "error" and bad.version == "1.2.3" and bad.components == {}
    assert bad.error is not None
    assert bad.error.startswith("RuntimeError:") and "bad plugin exploded on import" in bad.error

    dup = infos["dup"]
    assert dup.source == "error" and dup.error is not None
    assert dup.error.startswith("PluginError:")
    assert "'good'" in dup.error and "'dup'" in dup.error and "good-agg" in dup.error
    assert "dup-only" not in registry.names("schedule")  # rolled back
    assert not get_plugin_manager().has_plugin("dup")  # and unregistered from pluggy

    messages = [str(w.message) for w in record]
    assert any("'bad'" in m and "RuntimeError" in m for m in messages)
    assert any("'dup'" in m for m in messages)
    assert infos["smg_sdk.builtin"].source == "builtin"
    assert list(infos)[0] == "smg_sdk.builtin"  # the core loads first


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_disable_autoload_keeps_builtin_only(fake_dist: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SMG_DISABLE_PLUGIN_AUTOLOAD", value)
    names = [i.name for i in list_plugins()]
    assert names == ["smg_sdk.builtin"]
    assert "good-agg" not in get_registry().names("aggregator")


def test_reset_plugins_reloads(fake_dist: Path) -> None:
    with pytest.warns(PluginLoadWarning):
        assert "good-agg" in get_registry().names("aggregator")
    reset_plugins()
    with pytest.warns(PluginLoadWarning):
        assert get_registry().owner("aggregator", "good-agg") == "good"


# -- isolation from BaseException (SystemExit, KeyboardInterrupt) ---------------------------

HOSTILE = {
    "exits_on_import": ("exits_on_import", "import sys\nsys.exit(0)\n"),
    "interrupts_on_import": ("interrupts_on_import", "raise KeyboardInterrupt\n"),
    "exits_in_register": ("exits_in_register", """
        import sys
        from smg_sdk.plugins.hookspecs import hookimpl

        @hookimpl
        def smg_register(registry):
            registry.add_rule("half-registered", dict)
            sys.exit(3)
    """),
    "still_good": ("still_good", """
        from smg_sdk.plugins.hookspecs import hookimpl

        @hookimpl
        def smg_register(registry):
            registry.add_rule("still-good", dict)
    """),
}


@pytest.fixture
def hostile_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Plugins that call sys.exit or raise KeyboardInterrupt at import or registration, and a good one."""
    install_fake_dist(tmp_path, monkeypatch, "hostiledist", "0.1", HOSTILE)
    yield tmp_path
    for module, _ in HOSTILE.values():
        sys.modules.pop(module, None)


def test_base_exceptions_from_plugins_are_isolated(hostile_dist: Path) -> None:
    with pytest.warns(PluginLoadWarning):
        registry = get_registry()
    infos = _by_name(list_plugins())
    assert infos["exits_on_import"].source == "error" and infos["exits_on_import"].error.startswith("SystemExit")
    assert infos["interrupts_on_import"].error.startswith("KeyboardInterrupt")
    assert infos["exits_in_register"].error.startswith("SystemExit")
    assert ("rule", "half-registered") not in registry  # rolled back
    assert infos["still_good"].source == "entry point" and ("rule", "still-good") in registry
    assert ("encoder", "flux-text") in registry and infos["music"].error is None


def test_smg_plugins_lists_everything_despite_a_plugin_calling_exit(
    hostile_dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["exits_on_import"]["source"] == "error"
    assert listed["still_good"]["components"] == {"rule": ["still-good"]}


def test_register_plugin_turns_exit_into_plugin_error() -> None:
    with pytest.raises(PluginError, match="SystemExit"):
        register_plugin(_module("exits_now", HOSTILE["exits_in_register"][1]), name="exits-now")
    assert ("rule", "half-registered") not in get_registry()


def test_a_users_ctrl_c_while_plugins_load_still_interrupts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (a background job): no Ctrl-C can arrive")
    code = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n"
    install_fake_dist(tmp_path, monkeypatch, "slowdist", "0.1", {"slow": ("slow_plugin", code)})
    try:
        with pytest.raises(KeyboardInterrupt):
            get_registry()
    finally:
        sys.modules.pop("slow_plugin", None)


# -- programmatic registration -------------------------------------------------------------


def _module(name: str, body: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(textwrap.dedent(body), module.__dict__)
    return module


def test_register_plugin_with_module_object() -> None:
    module = _module(
        "notebook_plugin",
        """
        from smg_sdk.plugins.hookspecs import hookimpl
        __version__ = "0.0.1"

        class Mean:
            pass

        @hookimpl
        def smg_register(registry):
            registry.add_aggregator("nb-mean", Mean)
        """,
    )
    info = register_plugin(module)
    assert info == PluginInfo("notebook_plugin", "0.0.1", "manual", {"aggregator": ["nb-mean"]}, None)
    assert get_registry().owner("aggregator", "nb-mean") == "notebook_plugin"
    assert info in list_plugins()
    with pytest.raises(PluginError, match="already registered"):
        register_plugin(module, name="again")


def test_register_plugin_failure_rolls_back_and_raises() -> None:
    module = types.ModuleType("half_plugin")

    @hookimpl
    def smg_register(registry: Registry) -> None:
        registry.add_verifier("half-verifier", object)
        raise ValueError("oops")

    module.smg_register = smg_register  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="half_plugin.*ValueError: oops"):
        register_plugin(module)
    assert "half-verifier" not in get_registry().names("verifier")
    assert "half_plugin" not in [i.name for i in list_plugins()]
    assert not get_plugin_manager().has_plugin("half_plugin")  # the name is free again


def test_unknown_hook_name_is_an_error() -> None:
    module = _module(
        "typo_plugin",
        """
        from smg_sdk.plugins.hookspecs import hookimpl

        @hookimpl
        def smg_regster(registry):
            pass
        """,
    )
    with pytest.raises(PluginError, match="smg_regster"):
        register_plugin(module)


# -- registry --------------------------------------------------------------------------------


class Widget:
    def __init__(self, size: int = 1) -> None:
        self.size = size


class Slotted:
    __slots__ = ("x",)


def test_build_records_name_and_config() -> None:
    registry = Registry()
    with registry.registering("tests"):
        registry.add_encoder("widget", Widget)
    config = {"size": 4}
    obj = registry.build("encoder", "widget", **config)
    assert isinstance(obj, Widget) and obj.size == 4
    assert obj.smg_name == "widget" and obj.smg_config == {"size": 4}
    config["size"] = 5
    assert obj.smg_config == {"size": 4}  # a copy, not the caller's dict
    assert registry.owner("encoder", "widget") == "tests"
    assert ("encoder", "widget") in registry and ("rule", "widget") not in registry


def test_build_rejects_objects_without_attributes() -> None:
    registry = Registry()
    registry.add_planner("slotted", Slotted)
    with pytest.raises(PluginError, match="must return an object that accepts attributes"):
        registry.build("planner", "slotted")


def test_unknown_names_and_kinds() -> None:
    registry = Registry()
    registry.add_rule("alpha", Widget)
    registry.add_rule("beta", Widget)
    with pytest.raises(RegistryError) as err:
        registry.get("rule", "alpah")
    message = str(err.value)
    assert "'alpha'" in message and "'beta'" in message and "smg plugins" in message
    assert "Did you mean 'alpha'" in message
    with pytest.raises(RegistryError, match="smg plugins"):
        registry.build("verifier", "nothing")
    with pytest.raises(RegistryError, match="known kinds"):
        registry.names("sampler")
    with pytest.raises(RegistryError):
        registry.owner("rule", "gamma")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_an_add_method(kind: str) -> None:
    registry = Registry()
    getattr(registry, f"add_{kind}")("x", Widget)
    assert registry.names(kind) == ["x"]


def test_duplicate_names_and_invalid_factories() -> None:
    registry = Registry()
    with registry.registering("first"):
        registry.add_backend("flux", Widget)
    with registry.registering("second"), pytest.raises(PluginError) as err:
        registry.add_backend("flux", Widget)
    assert "'first'" in str(err.value) and "'second'" in str(err.value)
    with pytest.raises(PluginError, match="not a callable"):
        registry.add_backend("other", 42)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="'mine'"):
        with registry.registering("mine"):
            registry.add_rule("Bad Name", Widget)


VALID_NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=24), VALID_NAMES))
def test_names_register_or_raise_plugin_error(name: str) -> None:
    registry = Registry()
    valid = re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) is not None
    if valid:
        registry.add_aggregator(name, Widget)
        assert registry.names("aggregator") == [name]
        assert registry.get("aggregator", name) is Widget
    else:
        with pytest.raises(PluginError):
            registry.add_aggregator(name, Widget)
        assert registry.names("aggregator") == []


# -- CLI -----------------------------------------------------------------------------------


def _run_cli(args: list[str], extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SMG_DISABLE_PLUGIN_AUTOLOAD", None)
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run(
        [sys.executable, "-m", "smg_sdk.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_plugins_json_subprocess(fake_dist: Path) -> None:
    proc = _run_cli(["plugins", "--json"], fake_dist)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = {p["name"]: p for p in json.loads(proc.stdout)}
    assert set(data["good"]) == {"name", "version", "source", "components", "error"}
    assert data["good"]["version"] == "1.2.3"
    assert data["good"]["components"] == {"aggregator": ["good-agg"], "rule": ["good-rule"]}
    assert data["bad"]["source"] == "error" and "RuntimeError" in data["bad"]["error"]
    assert data["dup"]["source"] == "error"
    assert data["smg_sdk.builtin"]["source"] == "builtin"


def test_cli_bad_subcommand_subprocess() -> None:
    proc = _run_cli(["no-such-command"])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # issue 13: every CLI error is one line; it names the bad command and where usage is
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no-such-command" in proc.stderr and "smg --help" in proc.stderr


def test_cli_plugins_table(fake_dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "VERSION", "SOURCE"]
    assert "good-agg" in out and "good-rule" in out and "1.2.3" in out
    assert "RuntimeError: bad plugin exploded on import" in out


def test_cli_smg_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: object) -> int:
        raise RegistryError("no preset named 'x'.\nRun `smg plugins`.")

    monkeypatch.setattr(cli, "cmd_plugins", broken)
    assert cli.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err == "smg: error: no preset named 'x'. Run `smg plugins`.\n"
    assert isinstance(RegistryError("x"), SMGError)


def test_build_names_a_misspelt_option():
    from smg_sdk.errors import RegistryError
    from smg_sdk.plugins.registry import Registry

    class Rule:
        def __init__(self, fraction: float = 0.5, soft: bool = False):
            self.fraction, self.soft = fraction, soft

    registry = Registry()
    registry.add_rule("r", Rule)
    assert registry.build("rule", "r", fraction=0.25).fraction == 0.25
    with pytest.raises(RegistryError, match="no option 'fracton'; its options are: fraction, soft"):
        registry.build("rule", "r", fracton=0.25)
    registry.add_rule("loose", lambda **anything: Rule())  # a factory taking **kwargs decides for itself
    assert isinstance(registry.build("rule", "loose", whatever=1), Rule)
