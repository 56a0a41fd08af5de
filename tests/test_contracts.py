"""Issue 14, Move B: declared stream/meta contracts, checked when a pipeline is composed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from smg_sdk import Aggregator, ConditionEncoder, ConditionSet, PluginError, StreamSpec, SubjectPipeline
from smg_sdk.contracts import DECLARES, CompositionError, check_composition
from smg_sdk.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
IN_TREE = ("smg_sdk.builtin", "squeeze-mllm", "music", "aligngen")
LAP = {"num_layers": 3, "in_dim": 16, "out_dim": 32}


@pytest.fixture(scope="module")
def backend():
    return SubjectPipeline.from_preset("tiny").backend


class NeedsMeta(Aggregator):
    needs_streams = makes_streams = drops_streams = reads_meta = writes_meta = ()

    def __init__(self, key: str = "sstar_slots"):
        self.key = key

    @property
    def needs_meta(self) -> tuple[str, ...]:
        return (self.key,)

    def aggregate(self, conditions: ConditionSet, request) -> ConditionSet:
        return conditions


class Undeclared(Aggregator):
    """Written before contracts existed: declares nothing."""

    def aggregate(self, conditions: ConditionSet, request) -> ConditionSet:
        return conditions


class UndeclaredEncoder(ConditionEncoder):
    def encode(self, request, backend) -> ConditionSet:
        return ConditionSet()


def test_aggregator_needing_a_stream_no_encoder_makes_fails_at_compose_naming_both(backend):
    with pytest.raises(CompositionError) as error:
        SubjectPipeline.compose(backend, encoders=["flux-text", "vae-reference"], aggregators=[("lap", LAP)])
    message = str(error.value)
    assert "aggregator 'lap'" in message and "raw stream 'mllm-raw'" in message  # the one that needs
    assert "encoder 'flux-text'" in message and "encoder 'vae-reference'" in message  # the ones before it
    assert "the encoder 'squeeze-mllm' makes it" in message.lower()  # the one that could have provided
    assert "\n" not in message


def test_the_constructor_checks_too(backend):
    registry = get_registry()
    with pytest.raises(CompositionError, match="aggregator 'dla'"):
        SubjectPipeline(backend, [registry.build("encoder", "flux-text")], [registry.build("aggregator", "dla", **LAP)])


def test_a_stream_removed_before_it_is_needed_names_the_remover(backend):
    with pytest.raises(CompositionError, match="aggregator 'lap' .* removes it before it runs"):
        SubjectPipeline.compose(backend, encoders=["flux-text", "squeeze-mllm"],
                                aggregators=[("lap", LAP), ("dla", LAP)])


def test_two_encoders_making_one_stream_name(backend):
    with pytest.raises(CompositionError, match="both make text stream 'prompt'"):
        SubjectPipeline.compose(backend, encoders=["flux-text", ("aligngen-text", {"t5_dim": 32, "clip_dim": 32})])


def test_meta_needs_are_checked_and_plans_come_from_the_planner(backend):
    with pytest.raises(CompositionError, match=r"NeedsMeta needs conditions.meta\['sstar_slots'\].*flux-text"):
        SubjectPipeline.compose(backend, aggregators=[NeedsMeta()])
    SubjectPipeline.compose(backend, encoders=[("aligngen-text", {"t5_dim": 32, "clip_dim": 32})],
                            aggregators=[NeedsMeta()])
    with pytest.raises(CompositionError, match="'plan'"):
        SubjectPipeline.compose(backend, aggregators=[NeedsMeta("plan")])
    SubjectPipeline.compose(backend, aggregators=[NeedsMeta("plan")], planner="music-heuristic")


def test_undeclared_components_stay_unchecked(backend):
    SubjectPipeline.compose(backend, aggregators=[Undeclared()])
    # an undeclared encoder may make anything, so a declared need after it is not reported missing
    SubjectPipeline.compose(backend, encoders=["flux-text", UndeclaredEncoder()], aggregators=[("lap", LAP)])
    SubjectPipeline.compose(backend, encoders=["flux-text", UndeclaredEncoder()], aggregators=[NeedsMeta()])


def test_malformed_declarations_are_plugin_errors():
    class Bare(Aggregator):
        needs_streams = "mllm-raw"  # not a tuple

        def aggregate(self, conditions, request):
            return conditions

    class Templated(Aggregator):
        needs_streams = (StreamSpec("{missing}"),)

        def aggregate(self, conditions, request):
            return conditions

    with pytest.raises(PluginError, match="declares needs_streams"):
        check_composition([], [Bare()])
    with pytest.raises(PluginError, match="attribute 'missing'"):
        check_composition([], [Templated()])
    with pytest.raises(PluginError, match="side"):
        StreamSpec("x", side="image")


def test_stream_spec_matching():
    assert StreamSpec("ref*", "reference").overlaps(StreamSpec("ref2"))
    assert not StreamSpec("ref*", "reference").overlaps(StreamSpec("ref2", "raw"))
    assert StreamSpec("redux*").overlaps(StreamSpec("red*")) and not StreamSpec("ref*").overlaps(StreamSpec("redux*"))
    assert StreamSpec("redux*", "raw").covers(StreamSpec("redux*", "raw"))
    assert not StreamSpec("redux*", "raw").covers(StreamSpec("redux*", "text"))


@pytest.mark.parametrize("kind", sorted(DECLARES))
def test_every_in_tree_component_declares_its_contract(kind):
    registry = get_registry()
    names = [n for n in registry.names(kind) if registry.owner(kind, n) in IN_TREE]
    assert names
    for name in names:
        factory = registry.get(kind, name)
        assert isinstance(factory, type), f"{kind} {name!r} is registered as a function, not its class"
        undeclared = [a for a in DECLARES[kind] if getattr(factory, a, None) is None]
        assert not undeclared, f"{kind} {name!r} does not declare {undeclared}"


def in_tree_presets() -> list[str]:
    registry = get_registry()
    return [n for n in registry.names("preset") if registry.owner("preset", n) in IN_TREE]


def assert_declared_and_clean(pipe: SubjectPipeline) -> None:
    check_composition(pipe.encoders, pipe.aggregators, pipe.rules, pipe.schedule, pipe.planner, pipe.verifier)
    kinds = {"encoder": pipe.encoders, "aggregator": pipe.aggregators, "rule": pipe.rules,
             "schedule": [pipe.schedule] if pipe.schedule is not None else []}
    for kind, components in kinds.items():
        for component in components:
            undeclared = [a for a in DECLARES[kind] if getattr(component, a, None) is None]
            assert not undeclared, f"{type(component).__name__} does not declare {undeclared}"


def _real_preset_options(name: str, tmp_path_factory) -> dict:
    """Local folders for the real-model presets: the embedded tiny models (Redux-dev in its published layout)."""
    from smg_sdk.presets.tiny import tiny_clip_path, tiny_flux_path, tiny_qwen_vl_path, tiny_redux_path, tiny_siglip_path

    flux, qwen, clip = str(tiny_flux_path()), str(tiny_qwen_vl_path()), str(tiny_clip_path())
    if name == "aligngen":
        return dict(path=flux, siglip_path=str(tiny_siglip_path()), redux_path=str(tiny_redux_path()), rank=4)
    if name == "composed":
        import real_layouts

        redux = str(real_layouts.flux_redux_dev(tmp_path_factory.mktemp("redux")))
        return dict(path=flux, redux_path=redux, mllm_path=qwen, clip_path=clip, dtype="fp32")
    return {"reference-lora": dict(path=flux, dtype="fp32"), "omini": dict(path=flux, dtype="fp32"),
            "squeeze": dict(path=flux, mllm_path=qwen, dtype="fp32"),
            "music": dict(path=flux, planner_path=qwen, clip_path=clip, dtype="fp32")}.get(name, {})


@pytest.mark.parametrize("name", in_tree_presets())
def test_every_in_tree_preset_composes_cleanly(name, tmp_path_factory):
    assert {"tiny", "squeeze-tiny", "music-tiny", "aligngen-tiny", "squeeze", "music", "composed"} <= set(in_tree_presets())
    options = _real_preset_options(name, tmp_path_factory)
    assert_declared_and_clean(SubjectPipeline.from_preset(name, **options))


def test_the_composed_example_pipeline_composes_cleanly():
    """examples/compose_all.py: Squeeze-MLLM + AlignGen + MUSIC in one pipeline."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        spec = importlib.util.spec_from_file_location("compose_all", ROOT / "examples" / "compose_all.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        pipe = module.build()
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert {type(a).__name__ for a in pipe.aggregators} == {"DualLayerAggregation", "DeviationExtractionModule"}
    assert_declared_and_clean(pipe)


class Sloppy(Aggregator):
    """Does what its declaration does not say (one thing at a time, by ``what``)."""

    needs_streams = makes_streams = drops_streams = needs_meta = reads_meta = writes_meta = ()

    def __init__(self, what: str):
        self.what = what

    def aggregate(self, conditions: ConditionSet, request) -> ConditionSet:
        import torch

        from smg_sdk import ConditionStream

        if self.what == "makes":
            return conditions.with_streams([ConditionStream("extra", torch.zeros(1, 2, 4), torch.zeros(2, 3))])
        if self.what == "drops":
            return conditions.without("prompt")
        out = conditions.with_streams([])
        out.meta["layout"] = [[1]]
        return out


class SloppyUndeclared(Sloppy):
    makes_streams = drops_streams = writes_meta = None


@pytest.mark.parametrize("what, rule", [("makes", "made text stream 'extra'"), ("drops", "removed text stream 'prompt'"),
                                        ("writes", r"wrote meta\['layout'\]")])
def test_conformance_kit_holds_components_to_their_declarations(what, rule):
    import torch

    from smg_sdk import ConditionStream
    from smg_sdk.testing import check_aggregator

    conditions = ConditionSet([ConditionStream("prompt", torch.ones(1, 2, 4), torch.zeros(2, 3))])
    with pytest.raises(AssertionError, match=rule):
        check_aggregator(Sloppy(what), conditions)
    check_aggregator(SloppyUndeclared(what), conditions)  # undeclared: not checked
