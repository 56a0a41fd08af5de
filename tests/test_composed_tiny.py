"""``composed-tiny``: AlignGen + Squeeze-MLLM + MUSIC on the tiny FLUX, each with its plugin's shipped weights."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from smg_sdk import ConfigError, RegistryError, SubjectPipeline
from smg_sdk.backends.flux.composed import composed_tiny_preset
from smg_sdk.cli import _preset_options
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.plugins import reset_plugins


def names(components) -> list[str]:
    return [getattr(c, "smg_name", None) for c in components]


@pytest.fixture(scope="module")
def composed() -> SubjectPipeline:
    return SubjectPipeline.from_preset("composed-tiny")


def test_composed_tiny_holds_each_methods_shipped_parts(composed):
    assert names(composed.encoders) == ["aligngen-text", "redux", "vae-reference", "squeeze-mllm"]
    assert names(composed.aggregators) == ["dla", "dem"]
    assert names(composed.rules) == ["aligngen-mask", "isolate-references", "music-layout"]
    assert (composed.schedule.smg_name, composed.planner.smg_name) == ("multistage", "music")
    squeeze = SubjectPipeline.from_preset("squeeze-tiny").aggregators[0].state_dict()
    aligngen = SubjectPipeline.from_preset("aligngen-tiny").aggregators[0].state_dict()
    for ours, theirs in ((composed.aggregators[0].state_dict(), squeeze),
                         (composed.aggregators[1].state_dict(), aligngen)):
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert "true_cfg_scale" not in composed.defaults  # Squeeze's stream never saw the empty prompt


@pytest.mark.parametrize("switch, absent, cfg", [
    ("squeeze", {"squeeze-mllm", "dla", "multistage"}, False),  # aligngen-tiny samples without CFG
    ("music", {"music-layout", "music"}, False),
    ("aligngen", {"aligngen-text", "redux", "dem", "aligngen-mask"}, False),
])
def test_each_method_can_be_left_out(switch, absent, cfg):
    pipe = SubjectPipeline.from_preset("composed-tiny", **{switch: False})
    present = set(names(pipe.encoders) + names(pipe.aggregators) + names(pipe.rules)
                  + names([pipe.schedule, pipe.planner]))
    assert not present & absent, present & absent
    assert "vae-reference" in present
    assert ("true_cfg_scale" in pipe.defaults) is cfg


def test_without_aligngen_and_squeeze_the_tiny_presets_guidance_stays():
    pipe = SubjectPipeline.from_preset("composed-tiny", aligngen=False, squeeze=False)
    assert pipe.defaults["true_cfg_scale"] == SubjectPipeline.from_preset("tiny").defaults["true_cfg_scale"]
    assert pipe.planner.smg_name == "music"


@pytest.mark.parametrize("options, needle", [
    ({"squeeze": "no"}, "composed-tiny squeeze must be true or false"),
    ({"trained_planner": 1}, "composed-tiny trained_planner must be true or false"),
    ({"aligngen": False, "squeeze": False, "music": False}, "is the 'tiny' preset"),
    ({"aggregator": 3}, "composed-tiny aggregator must be a name"),
    ({"layout_mode": ["soft"]}, "composed-tiny layout_mode must be a name"),
    # an option for a method switched off has nothing to act on: refused, not ignored
    ({"squeeze": False, "aggregator": "lap"}, r"aggregator='lap' configures squeeze, which squeeze=False leaves out"),
    ({"squeeze": False, "aggregator": "dla"}, r"aggregator='dla' configures squeeze"),
    ({"music": False, "trained_planner": True}, r"trained_planner=True configures music, which music=False"),
    ({"music": False, "trained_planner": False}, r"trained_planner=False configures music"),
    ({"music": False, "layout_mode": "soft"}, r"layout_mode='soft' configures music"),
    (_preset_options(["music=false", "layout_mode=hard"]), r"layout_mode='hard' configures music"),  # smg --option
])
def test_bad_switches_name_the_option(options, needle):
    with pytest.raises(ConfigError, match=needle):
        SubjectPipeline.from_preset("composed-tiny", **options)


@pytest.mark.parametrize("options", [{}, {"aligngen": False, "aggregator": "lap", "layout_mode": "soft"}])
def test_saved_composed_pipeline_reloads_and_draws_the_same_image(composed, options, tmp_path):
    pipe = SubjectPipeline.from_preset("composed-tiny", **options) if options else composed
    sample = SubjectWorld("heldout", "reference", 0, subjects=(2,))[0]
    loaded = SubjectPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "composed"))
    assert names(loaded.components) == names(pipe.components) and loaded.defaults == pipe.defaults
    assert [getattr(r, "mode", None) for r in loaded.rules] == [getattr(r, "mode", None) for r in pipe.rules]
    images = [np.asarray(p(sample.prompt, sample.references, seed=3, num_inference_steps=2, num_candidates=2).images[0])
              for p in (pipe, loaded)]
    assert images[0].shape == (128, 128, 3)
    np.testing.assert_array_equal(images[0], images[1])


def test_method_options_reach_their_method(composed):
    pipe = SubjectPipeline.from_preset("composed-tiny", **_preset_options(
        ["aligngen=false", "aggregator=lap", "layout_mode=soft", "trained_planner=true"]))
    assert names(pipe.aggregators) == ["lap"]
    assert [r.mode for r in pipe.rules if r.smg_name == "music-layout"] == ["soft"]
    assert pipe.planner.model_path == SubjectPipeline.from_preset("music-tiny", trained_planner=True).planner.model_path
    assert composed.planner.model_path != pipe.planner.model_path  # not given: the heuristic-fallback planner


@pytest.fixture
def only_music(monkeypatch):
    monkeypatch.setenv("SMG_LOAD_PLUGINS", "music")
    reset_plugins()
    yield
    monkeypatch.delenv("SMG_LOAD_PLUGINS")
    reset_plugins()


def test_a_missing_plugin_is_named_with_what_to_do(only_music):
    with pytest.raises(RegistryError) as caught:
        SubjectPipeline.from_preset("composed-tiny")
    message = str(caught.value)
    for needle in ("'aligngen' (for aligngen=True", "'squeeze-mllm' (for squeeze=True",
                   "SMG_LOAD_PLUGINS=aligngen,music,squeeze-mllm", "pass aligngen=False and squeeze=False"):
        assert needle in message, message
    assert "'music' (for" not in message
    with pytest.raises(RegistryError, match="or use the 'tiny' preset, which needs no plugin"):
        SubjectPipeline.from_preset("composed-tiny", music=False)
    assert SubjectPipeline.from_preset("composed-tiny", aligngen=False, squeeze=False).planner.smg_name == "music"


def test_every_option_is_in_the_readme_table():
    """README's ``composed-tiny`` table lists each option with its default, as the other tiny presets' options are."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "The `composed-tiny` preset" in readme, "README does not describe composed-tiny"
    table = readme.split("The `composed-tiny` preset", 1)[1].split("\n\n")[1]
    rows = {cell.strip(" `"): default.strip(" `") for line in table.splitlines()[2:]
            for cells in [line.strip("|").split("|")] for cell in cells[0].split(",") for default in [cells[1]]}
    parameters = inspect.signature(composed_tiny_preset).parameters
    assert set(rows) == set(parameters)
    defaults = {"aggregator": "dla", "trained_planner": "false", "layout_mode": "hard"}  # None: not given
    for name, parameter in parameters.items():
        shown = defaults.get(name, str(parameter.default).lower())
        assert rows[name] == shown, (name, rows[name], shown)
