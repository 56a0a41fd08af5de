"""Plugins add ``smg`` sub-commands (``smg_register_commands``), and ``SMG_LOAD_PLUGINS`` picks plugins.

The plugins here are real: modules plus a ``*.dist-info`` folder with entry points, on the
``PYTHONPATH`` of real ``smg`` subprocesses, discovered exactly as installed distributions are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from smg_sdk.cli import build_parser
from smg_sdk.plugins import PluginLoadWarning, add_plugin_commands, register_plugin, reset_plugins

ROOT = Path(__file__).resolve().parents[1]

HELLO = """
import argparse
from smg_sdk import hookimpl
from smg_sdk.errors import SMGError

@hookimpl
def smg_register(registry):
    registry.add_rule("hello-rule", dict)

def hello(args: argparse.Namespace) -> int:
    if not args.name:
        raise SMGError("hello: --name is empty;\\ngive a name.")
    print(f"hello {args.name}")
    return 0

@hookimpl
def smg_register_commands(subparsers):
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(func=hello)
"""

BROKEN = """
from smg_sdk import hookimpl

@hookimpl
def smg_register_commands(subparsers):
    subparsers.add_parser("broken", help="half made").set_defaults(func=print)
    raise RuntimeError("command hook exploded")
"""

CLASH = """
from smg_sdk import hookimpl

@hookimpl
def smg_register_commands(subparsers):
    subparsers.add_parser("clash-first", help="added before the clash").set_defaults(func=print)
    subparsers.add_parser("generate", help="not the real generate").set_defaults(func=print)
"""

NO_HANDLER = """
from smg_sdk import hookimpl

@hookimpl
def smg_register_commands(subparsers):
    subparsers.add_parser("orphan", help="no handler")
"""

EXITS = """
import sys
from smg_sdk import hookimpl

@hookimpl
def smg_register_commands(subparsers):
    subparsers.add_parser("exits", help="exits").set_defaults(func=print)
    sys.exit(3)
"""

PLUGINS = {"hello": ("cmd_hello", HELLO), "broken-cmd": ("cmd_broken", BROKEN), "clash": ("cmd_clash", CLASH),
           "no-handler": ("cmd_no_handler", NO_HANDLER), "exits": ("cmd_exits", EXITS)}
BAD = ("broken-cmd", "clash", "no-handler", "exits")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 'installed' distribution ``cmddist 0.1`` holding the plugins above."""
    folder = tmp_path_factory.mktemp("site")
    for module, code in PLUGINS.values():
        (folder / f"{module}.py").write_text(textwrap.dedent(code))
    info = folder / "cmddist-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cmddist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[smg_sdk]\n" + "".join(f"{name} = {module}\n" for name, (module, _) in PLUGINS.items()))
    return folder


def smg(site: Path, *args: str, load: str | None = ",".join(PLUGINS), **env: str) -> subprocess.CompletedProcess:
    """``smg ARGS`` as a real process with ``site`` installed; ``load`` is SMG_LOAD_PLUGINS (None: unset)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SMG_LOAD_PLUGINS", "SMG_DISABLE_PLUGIN_AUTOLOAD")}
    environ["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if load is not None:
        environ["SMG_LOAD_PLUGINS"] = load
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "smg_sdk.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=300)


# -- the command hook ----------------------------------------------------------------------


def test_a_plugin_command_runs_while_broken_plugins_are_reported_and_skipped(site: Path) -> None:
    proc = smg(site, "hello", "--name", "you")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello you\n"
    assert "Traceback" not in proc.stderr
    for name in BAD:
        assert f"plugin {name!r} failed to add its smg commands" in proc.stderr, (name, proc.stderr)
    assert "RuntimeError: command hook exploded" in proc.stderr and "SystemExit: 3" in proc.stderr
    assert "'orphan' without a handler" in proc.stderr


def test_help_lists_the_good_commands_and_none_of_a_failed_plugin(site: Path) -> None:
    proc = smg(site, "--help")
    assert proc.returncode == 0, proc.stderr
    commands = proc.stdout.split("options:")[0]
    assert "hello" in commands and "say hello" in commands and "generate" in commands
    for gone in ("broken", "clash-first", "orphan", "exits", "not the real generate"):
        assert gone not in commands, gone
    for gone in ("broken", "clash-first"):  # raised after adding it; rolled back with the clash
        refused = smg(site, gone)
        assert refused.returncode == 2 and "invalid choice" in refused.stderr.splitlines()[-1], gone


def test_core_commands_stay_the_cores_and_skip_command_hooks(site: Path) -> None:
    proc = smg(site, "generate", "--help")
    assert proc.returncode == 0 and "--prompt" in proc.stdout and "not the real generate" not in proc.stdout
    assert "failed to add its smg commands" not in proc.stderr  # core commands never run command hooks
    listing = smg(site, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["hello"]["components"] == {"rule": ["hello-rule"]}
    assert all(plugins[name]["source"] == "entry point" for name in BAD)  # their smg_register is fine


def test_a_plugin_commands_smg_error_is_one_line(site: Path) -> None:
    proc = smg(site, "hello", "--name", "", load="hello")
    assert proc.returncode == 2
    assert proc.stderr == "smg: error: hello: --name is empty; give a name.\n"


def test_the_installed_smg_script_runs_plugin_commands(site: Path) -> None:
    script = Path(sys.executable).with_name("smg")
    if not script.is_file():
        pytest.skip(f"no console script {script}: smg-sdk is not installed in this interpreter's environment")
    environ = {**os.environ, "SMG_LOAD_PLUGINS": "hello",
               "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([str(script), "hello"], capture_output=True, text=True, env=environ, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "hello world\n", proc.stderr


# -- SMG_LOAD_PLUGINS ------------------------------------------------------------------------


def _listed(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    return {p["name"]: p for p in json.loads(proc.stdout)}


def test_load_plugins_loads_only_the_named_ones(site: Path) -> None:
    listed = _listed(smg(site, "plugins", "--json", load=" hello , clash"))
    assert set(listed) == {"smg_sdk.builtin", "hello", "clash"}
    quiet = smg(site, "--help", load="hello")
    assert quiet.returncode == 0 and quiet.stderr == ""  # the broken plugins were never loaded
    assert "hello" in quiet.stdout


def test_load_plugins_empty_loads_none(site: Path) -> None:
    assert set(_listed(smg(site, "plugins", "--json", load=""))) == {"smg_sdk.builtin"}
    proc = smg(site, "hello", load="")
    assert proc.returncode == 2 and "invalid choice: 'hello'" in proc.stderr


def test_load_plugins_unset_loads_every_installed_plugin(site: Path) -> None:
    listed = _listed(smg(site, "plugins", "--json", load=None))
    assert set(PLUGINS) | {"smg_sdk.builtin", "music", "aligngen", "squeeze-mllm"} <= set(listed)


def test_an_unknown_name_is_warned_about_by_name(site: Path) -> None:
    proc = smg(site, "hello", load="hello,nope")
    assert proc.returncode == 0 and proc.stdout == "hello world\n"
    assert "PluginLoadWarning" in proc.stderr and "SMG_LOAD_PLUGINS names 'nope'" in proc.stderr
    assert " hello," in proc.stderr.split("installed:")[1]  # it lists what is installed
    listed = _listed(smg(site, "plugins", "--json", load="nope"))
    assert listed["nope"]["source"] == "error" and "SMG_LOAD_PLUGINS names 'nope'" in listed["nope"]["error"]
    assert set(listed) == {"smg_sdk.builtin", "nope"}


def test_load_plugins_wins_over_disabled_autoload(site: Path) -> None:
    assert set(_listed(smg(site, "plugins", "--json", load="hello", SMG_DISABLE_PLUGIN_AUTOLOAD="1"))) == {
        "smg_sdk.builtin", "hello"}
    assert set(_listed(smg(site, "plugins", "--json", load=None, SMG_DISABLE_PLUGIN_AUTOLOAD="1"))) == {
        "smg_sdk.builtin"}


# -- add_plugin_commands in-process: the rollback leaves argparse exactly as it was ---------


def _module(name: str, body: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(textwrap.dedent(body), module.__dict__)
    return module


@pytest.fixture
def no_entry_points(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SMG_LOAD_PLUGINS", "")
    reset_plugins()
    yield
    reset_plugins()


def test_a_failing_hook_is_rolled_back_completely(no_entry_points) -> None:
    parser = build_parser(plugin_commands=False)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    before, help_before = dict(sub.choices), parser.format_help()
    for name, (module, code) in PLUGINS.items():
        register_plugin(_module(module, code), name=name)
    with pytest.warns(PluginLoadWarning) as record:
        added = add_plugin_commands(sub)
    # the core's own plugin adds `train`, `convert-weights` and `plan-memory`
    assert added == {"smg_sdk.builtin": ["train", "convert-weights", "plan-memory"], "hello": ["hello"]}
    assert sorted(str(w.message).split("'")[1] for w in record) == sorted(BAD)
    assert set(sub.choices) == set(before) | {"hello", "train", "convert-weights", "plan-memory"}
    assert all(sub.choices[n] is p for n, p in before.items())  # the core's parsers are untouched
    help_after = parser.format_help()
    # (the command column widens for the longer names, so compare each command's help line, not the layout)
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(f" {h}" in " ".join(help_after.split()) for h in helps.values())
    assert all(f" {helps[n]}" in " ".join(help_before.split()) for n in before)
    args = parser.parse_args(["hello", "--name", "x"])
    assert args.func.__module__ == "cmd_hello"
