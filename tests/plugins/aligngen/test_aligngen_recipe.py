"""``smg train subjectworld --recipe aligngen``: registered, trains, writes what ``aligngen-tiny`` loads, resumes
exactly; the ablation variants (``sstar_dem``, ``mask``) as pipelines and as weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smg_sdk import ConditionError, RecipeOptions, SubjectPipeline, SubjectWorld
from smg_sdk.cli import main
from smg_sdk.interfaces import component_name
from smg_sdk.plugins import get_registry
from smg_sdk.presets.tiny import tiny_flux_path
from smg_sdk.training.recipes import run_recipe

from aligngen_fixtures import one_torch_thread, quiet  # noqa: F401  (fixture)

LORA = Path("aligngen-ref") / "pytorch_lora_weights.safetensors"


def _run(out: Path, steps: int, **recipe_options) -> Path:
    options = RecipeOptions(str(out), steps=steps, batch_size=1, pool_size=2, eval_samples=0, progress=False)
    return run_recipe("aligngen", options, lambda line: None, **recipe_options)


def _tensors(weights: Path) -> dict[str, torch.Tensor]:
    out = {f"lora.{k.removeprefix('transformer.')}": v for k, v in load_file(weights / LORA).items()}
    for part in ("sstar", "dem"):
        if (weights / f"{part}.safetensors").is_file():
            out.update({f"{part}.{k}": v for k, v in load_file(weights / f"{part}.safetensors").items()})
    return out


def _loaded(pipe: SubjectPipeline) -> dict[str, torch.Tensor]:
    from smg_plugins.aligngen.weights import sstar_and_dem

    out = {f"lora.{k}": v for k, v in pipe.backend.adapter_state_dict("aligngen-ref").items()}
    parts = sstar_and_dem(pipe)
    if parts is not None:
        out.update({f"sstar.{k}": v for k, v in parts[0].token.state_dict().items()})
        out.update({f"dem.{k}": v for k, v in parts[1].state_dict().items()})
    return out


def test_recipe_kind_lists_aligngen_with_its_options(capsys):
    registry = get_registry()
    assert "aligngen" in registry.names("recipe") and registry.owner("recipe", "aligngen") == "aligngen"
    with pytest.raises(SystemExit) as done:
        main(["train", "subjectworld", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "  aligngen [aligngen]: " in shown and "sstar_dem, mask, reference_dropout, substitution" in shown


def test_shape_hierarchy_covers_every_subjectworld_class_word():
    import random

    from smg_sdk.data.subjectworld import SHAPES
    from smg_plugins.aligngen.recipe import shape_hierarchy
    from smg_plugins.aligngen.training import AlignGenTrainingStrategy

    strategy = AlignGenTrainingStrategy(reference_dropout=0.0, substitution=1.0, extra_parents=shape_hierarchy())
    hierarchy = strategy.hooks()[1].hierarchy
    assert all(hierarchy.ancestors(shape) == ["shape", "object"] for shape in SHAPES)
    sample = SubjectWorld("train", subjects=(2,))[0].training_sample()
    changed = strategy.hooks()[1].on_sample(sample, random.Random(0))
    assert [s.class_word for s in changed.subjects] != [s.class_word for s in sample.subjects]
    assert {s.class_word for s in changed.subjects} <= {"shape", "object"} and changed.prompt == sample.prompt


def test_two_steps_write_weights_that_aligngen_tiny_loads_exactly(tmp_path):
    from smg_plugins.aligngen.recipe import training_pipeline

    weights = _run(tmp_path / "run", steps=2)
    assert weights == tmp_path / "run" / "weights"
    assert json.loads((weights / "aligngen.json").read_text()) == {"sstar_dem": True, "mask": True}
    trained = _tensors(weights)
    start = _loaded(training_pipeline(RecipeOptions(str(tmp_path / "unused")), True, True))
    assert start.keys() == trained.keys()
    moved = {k.split(".")[0] for k in start if not torch.equal(start[k], trained[k])}
    assert moved == {"sstar", "dem", "lora"}, moved  # S*, the DEM and the LoRA (B starts at 0) all trained
    loaded = quiet(SubjectPipeline.from_preset("aligngen-tiny", weights=str(weights), flux=str(tiny_flux_path())))
    state = _loaded(loaded)
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in trained)
    sample = SubjectWorld("heldout", subjects=(1,))[0]
    assert loaded(sample.prompt, sample.subjects(), seed=0, num_inference_steps=1).images[0].size == (128, 128)
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())["losses"]) == 2


def test_a_shipped_variant_loads_by_preset_name_and_trained_false_is_the_seeded_one(tmp_path, monkeypatch):
    import shutil

    import smg_plugins.aligngen.weights as aligngen_weights

    weights = _run(tmp_path / "run", steps=1, mask=False)
    monkeypatch.setattr(aligngen_weights, "WEIGHTS", tmp_path / "shipped")
    shutil.copytree(weights, tmp_path / "shipped" / "sstar-dem")  # a run's OUT/weights copied as it is
    trained = _tensors(weights)
    shipped = _loaded(SubjectPipeline.from_preset("aligngen-tiny", mask=False))
    assert shipped.keys() == trained.keys() and all(torch.equal(shipped[k], trained[k]) for k in trained)
    seeded = _loaded(SubjectPipeline.from_preset("aligngen-tiny", mask=False, trained=False))
    assert not all(torch.equal(seeded[k], trained[k]) for k in trained)
    assert all(v.abs().sum() == 0 for k, v in seeded.items() if "lora_B" in k)
    other = _loaded(SubjectPipeline.from_preset("aligngen-tiny"))  # the full variant ships nothing here
    assert all(v.abs().sum() == 0 for k, v in other.items() if "lora_B" in k)
    with pytest.raises(ConditionError, match="trained=False"):
        SubjectPipeline.from_preset("aligngen-tiny", weights=str(weights), trained=False)


def test_stopped_at_step_1_and_resumed_is_bit_identical(tmp_path):
    straight = _tensors(_run(tmp_path / "straight", steps=2))
    _run(tmp_path / "split", steps=1)  # stopped after step 1, with its checkpoint
    resumed = _tensors(_run(tmp_path / "split", steps=2))  # step 2 on top (S* restored, not re-initialised)
    assert len(json.loads((tmp_path / "split" / "history.json").read_text())["losses"]) == 2
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_the_baseline_trains_the_lora_alone_and_loads_by_its_recorded_variant(tmp_path):
    weights = _run(tmp_path / "base", steps=1, sstar_dem=False, mask=False)
    assert sorted(p.name for p in weights.iterdir() if not p.name.startswith(".")) == ["aligngen-ref", "aligngen.json"]
    assert json.loads((weights / "aligngen.json").read_text()) == {"sstar_dem": False, "mask": False}
    trained = _tensors(weights)
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)
    pipe = SubjectPipeline.from_preset("aligngen-tiny", weights=str(weights))  # the variant read from aligngen.json
    assert [component_name(e) for e in pipe.encoders] == ["flux-text", "vae-reference"] and not pipe.aggregators
    assert [component_name(r) for r in pipe.rules] == ["isolate-references"]
    assert all(torch.equal(v, trained[k]) for k, v in _loaded(pipe).items())
    with pytest.raises(ConditionError, match="sstar_dem=false"):
        SubjectPipeline.from_preset("aligngen-tiny", weights=str(weights), sstar_dem=True)
    with pytest.raises(ConditionError, match=r"missing aligngen.json, aligngen-ref/pytorch_lora_weights.safetensors, "
                                             r"sstar.safetensors, dem.safetensors"):
        SubjectPipeline.from_preset("aligngen-tiny", weights=str(tmp_path / "nowhere"))
    (weights / "aligngen.json").unlink()
    with pytest.raises(ConditionError, match="missing aligngen.json;"):
        SubjectPipeline.from_preset("aligngen-tiny", weights=str(weights), sstar_dem=False)


@pytest.mark.parametrize("sstar_dem, mask", [(False, True), (True, False)])
def test_each_variant_has_its_components_and_saves_and_reloads(tmp_path, sstar_dem, mask):
    pipe = quiet(SubjectPipeline.from_preset("aligngen-tiny", sstar_dem=sstar_dem, mask=mask))
    encoders = [component_name(e) for e in pipe.encoders]
    assert ("aligngen-text" in encoders) == ("redux" in encoders) == sstar_dem == bool(pipe.aggregators)
    assert ("flux-text" in encoders) != sstar_dem
    assert ("aligngen-mask" in [component_name(r) for r in pipe.rules]) == mask
    with torch.no_grad():
        for name, tensor in pipe.backend.adapter_state_dict("aligngen-ref").items():
            if "lora_B" in name:  # a LoRA that acts, so the reload is checked on it
                tensor.copy_(torch.randn(tensor.shape, generator=torch.Generator().manual_seed(0)) * 0.1)
    sample = SubjectWorld("heldout", subjects=(2,))[0]

    def image(p):
        return p(sample.prompt, sample.subjects(), seed=0, num_inference_steps=1, output_type="latent").images[0]

    before = image(pipe)
    pipe.save_pretrained(tmp_path / "saved")
    reloaded = quiet(SubjectPipeline.from_pretrained(tmp_path / "saved"))
    assert [component_name(e) for e in reloaded.encoders] == encoders
    assert [component_name(r) for r in reloaded.rules] == [component_name(r) for r in pipe.rules]
    assert torch.allclose(image(reloaded), before, atol=1e-5)


@pytest.mark.parametrize("args, says", [
    (["--option", "colour=red"], "its options are: sstar_dem, mask, reference_dropout, substitution"),
    (["--option", "sstar_dem=yes"], "--option sstar_dem must be true or false"),
    (["--option", "mask=1"], "--option mask must be true or false"),
    (["--option", "reference_dropout=2"], "--option reference_dropout must be a probability"),
    (["--option", "substitution=true"], "--option substitution must be a probability"),
    (["--lr-schedule", "cosine"], "--lr-schedule does not apply to the 'aligngen' recipe"),
    (["--position", "omini"], "--position does not apply"),
    (["--vae", "somewhere"], "--vae does not apply"),
])
def test_bad_recipe_input_is_one_line_and_leaves_no_folder(tmp_path, capsys, args, says):
    code = main(["train", "subjectworld", "--recipe", "aligngen", *args, "--out", str(tmp_path / "run"), "--quiet",
                 "--threads", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_rerun_with_other_recipe_options_or_samples_is_refused(tmp_path):
    from smg_sdk.errors import ConfigError

    _run(tmp_path / "run", steps=1, mask=False)
    state = json.loads((tmp_path / "run" / "checkpoints" / "checkpoint-1" / "state.json").read_text())
    assert state["config"]["data"]["aligngen"] == {"sstar_dem": True, "mask": False, "reference_dropout": 0.5,
                                                   "substitution": 0.5}
    assert state["config"]["data"]["length"] == 2 and "identities" not in state["config"]["data"]["world"]
    with pytest.raises(ConfigError, match="other settings.*'mask': False.*'mask': True"):
        _run(tmp_path / "run", steps=2, mask=True)
    with pytest.raises(ConfigError, match="other settings.*'substitution': 0.5.*'substitution': 0.25"):
        _run(tmp_path / "run", steps=2, mask=False, substitution=0.25)
