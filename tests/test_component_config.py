"""Issue 14, Move B: components capture their config at construction, so hand-built ones save and reload."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

from smg_sdk import (
    Aggregator,
    AttentionRule,
    ConditionSet,
    RegistryError,
    SMGError,
    StreamSpec,
    Subject,
    SubjectPipeline,
    hookimpl,
)
from smg_sdk.interfaces import component_config, component_name
from smg_sdk.plugins import get_registry, register_plugin, reset_plugins

from conftest import make_image

PLUGIN = "config-test"


class Gain(nn.Module, Aggregator):
    """Scales one text stream by a learnable factor (a registered nn.Module aggregator)."""

    needs_streams = (StreamSpec("{stream}", side="text"),)
    makes_streams = drops_streams = needs_meta = reads_meta = writes_meta = ()

    def __init__(self, init: float = 1.0, stream: str = "prompt", tags: list[str] | None = None):
        super().__init__()
        self.stream, self.tags = stream, tags
        self.gain = nn.Parameter(torch.tensor(float(init)))

    def aggregate(self, conditions: ConditionSet, request) -> ConditionSet:
        stream = conditions.get(self.stream)
        return conditions.replace(self.stream, stream.with_tokens(stream.tokens * self.gain))


class LoudGain(Gain):
    """A subclass whose constructor calls ``super().__init__``: the outer call's options are the config."""

    def __init__(self, loudness: float, **rest):
        super().__init__(init=2 * loudness, **rest)


class Twice(Gain):
    """Registered under two names."""


class Unregistered(AttentionRule):
    def __init__(self, strength: float = 1.0):
        self.strength = strength

    def apply(self, mask, conditions, request) -> None:
        pass


class Legacy:
    """A third-party base class that is not an smg_sdk interface: its constructor records nothing."""

    def __init__(self, level: int):
        self.level = level


class LegacyRule(Legacy, AttentionRule):
    def apply(self, mask, conditions, request) -> None:
        pass


class SharesAModel(AttentionRule):
    ignore_for_config = ("model",)

    def __init__(self, model=None, scale: float = 1.0):
        self.model, self.scale = model, scale

    def apply(self, mask, conditions, request) -> None:
        pass


@pytest.fixture(scope="module")
def registered():
    module = types.ModuleType("config_test_plugin")

    @hookimpl
    def smg_register(registry):
        registry.add_aggregator("gain", Gain)
        registry.add_aggregator("loud-gain", LoudGain)
        registry.add_aggregator("twice-a", Twice)
        registry.add_aggregator("twice-b", Twice)
        registry.add_rule("legacy", LegacyRule)

    module.smg_register = smg_register
    register_plugin(module, name=PLUGIN)
    yield get_registry()
    reset_plugins()


@pytest.fixture(scope="module")
def tiny():
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: SubjectPipeline) -> torch.Tensor:
    subject = Subject(make_image(3), "dog")
    return pipe("a photo of <1>", [subject], seed=0, num_inference_steps=2, output_type="latent",
                height=64, width=64).images


def test_constructor_arguments_are_captured_by_name(registered):
    gain = Gain(0.5, tags=["a"])
    assert gain.smg_config == {"init": 0.5, "tags": ["a"]}  # positional named, defaults not filled in
    gain.tags.append("b")
    assert gain.smg_config == {"init": 0.5, "tags": ["a"]}  # a copy: later edits do not change the config
    assert component_name(gain) == "gain" and component_name(gain, "aggregator") == "gain"
    loud = LoudGain(3.0, stream="other")
    assert loud.smg_config == {"loudness": 3.0, "stream": "other"}  # the outer constructor's, flattened
    shares = SharesAModel(model=object(), scale=2.0)
    assert shares.smg_config == {"scale": 2.0}  # ignore_for_config is never recorded
    assert component_config(LegacyRule(3)) == {}  # nothing captured through a non-interface base


def test_built_by_name_and_by_hand_record_the_same(registered):
    by_name = registered.build("aggregator", "gain", init=0.5, stream="prompt")
    by_hand = Gain(init=0.5, stream="prompt")
    assert (by_name.smg_name, by_name.smg_config) == ("gain", by_hand.smg_config)
    assert component_name(by_hand) == "gain"


def test_hand_built_components_save_and_reload(registered, tiny, tmp_path):
    registry = get_registry()
    text, reference = registry.get("encoder", "flux-text"), registry.get("encoder", "vae-reference")
    constant = registry.get("schedule", "constant")
    pipe = SubjectPipeline(tiny.backend, [text(), reference(mode="cached", position="omini")], [Gain(0.5)],
                           schedule=constant(weights={"ref1": 0.5}), defaults=tiny.defaults)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pipe.aggregators[0].gain.fill_(0.75)  # trained state travels as weights, not config
    before = generate(pipe)
    folder = pipe.save_pretrained(tmp_path / "saved")
    manifest = json.loads((folder / "smg_pipeline.json").read_text())
    assert [(e["name"], e["config"]) for e in manifest["encoders"]] == [
        ("flux-text", {}), ("vae-reference", {"mode": "cached", "position": "omini"})]
    assert (manifest["aggregators"][0]["name"], manifest["aggregators"][0]["config"]) == ("gain", {"init": 0.5})
    assert manifest["schedule"] == {"name": "constant", "config": {"weights": {"ref1": 0.5}}}
    loaded = SubjectPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    assert float(loaded.aggregators[0].gain.detach()) == 0.75
    assert torch.allclose(before, generate(loaded), atol=1e-6)


def test_register_to_config_keeps_the_saved_config_with_the_component(registered):
    reference = get_registry().get("encoder", "vae-reference")(mode="cached", position="omini")
    reference.adapter = "subject"
    reference.register_to_config(adapter="subject")
    assert reference.smg_config == {"mode": "cached", "position": "omini", "adapter": "subject"}


@pytest.mark.parametrize("component, expected", [
    (Unregistered(2.0), "Unregistered in rules_0 was built by hand and its class is not registered"),
    (LegacyRule(3), "did not record the options it was built with"),
])
def test_unsaveable_hand_built_rule_is_named_at_save(registered, tiny, tmp_path, component, expected):
    pipe = SubjectPipeline(tiny.backend, tiny.encoders, rules=[component], defaults=tiny.defaults)
    with pytest.raises(SMGError, match=expected) as error:
        pipe.save_pretrained(tmp_path / "saved")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "saved").exists()  # nothing is left behind


def test_class_registered_twice_cannot_be_saved_by_hand(registered, tiny, tmp_path):
    pipe = SubjectPipeline(tiny.backend, tiny.encoders, [Twice(0.5)], defaults=tiny.defaults)
    with pytest.raises(SMGError, match=r"several names \(twice-a, twice-b\)"):
        pipe.save_pretrained(tmp_path / "saved")


def test_music_planner_built_from_its_config_saves_its_settings(tmp_path, tiny):
    from smg_plugins.music.planner import MusicPlanner, MusicPlannerConfig

    planner = MusicPlanner(MusicPlannerConfig(max_attempts=2), mllm=object(), temperature=0.5)
    assert component_name(planner) == "music"
    assert planner.smg_config == {"max_attempts": 2, "temperature": 0.5}  # the settings, not the loaded model
    rebuilt = get_registry().build("planner", "music", **planner.smg_config)
    assert rebuilt.config == planner.config


@pytest.mark.parametrize("kind, name, option", [("aggregator", "lap", "num_layers"), ("preset", "aligngen", "path")])
def test_missing_required_option_is_one_line_registry_error(kind, name, option):
    with pytest.raises(RegistryError) as error:
        get_registry().build(kind, name)
    message = str(error.value)
    assert name in message and option in message and "\n" not in message
