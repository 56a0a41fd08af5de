"""``smg train subjectworld --recipe squeeze``: registered, trains, writes what ``squeeze-tiny`` loads, resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smg_sdk import RecipeOptions, SubjectPipeline, SubjectWorld
from smg_sdk.cli import main
from smg_sdk.plugins import get_registry
from smg_sdk.presets.tiny import tiny_flux_path
from smg_sdk.training.recipes import run_recipe

LORA = Path("squeeze-identity") / "pytorch_lora_weights.safetensors"


def _run(out: Path, steps: int, stage1_steps: int = 1, aggregator: str = "dla") -> Path:
    options = RecipeOptions(str(out), steps=steps, batch_size=1, pool_size=2, eval_samples=0, progress=False)
    return run_recipe("squeeze", options, lambda line: None, aggregator=aggregator, stage1_steps=stage1_steps)


def _tensors(weights: Path, aggregator: str = "dla") -> dict[str, torch.Tensor]:
    return {**{f"agg.{k}": v for k, v in load_file(weights / f"{aggregator}.safetensors").items()},
            **{f"lora.{k}": v for k, v in load_file(weights / LORA).items()}}


def test_recipe_kind_lists_the_core_recipes_and_squeeze(capsys):
    registry = get_registry()
    assert {"vae", "base", "reference-lora", "squeeze"} <= set(registry.names("recipe"))
    assert registry.owner("recipe", "squeeze") == "squeeze-mllm"
    with pytest.raises(SystemExit) as done:
        main(["train", "subjectworld", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert all(f"  {name} [" in shown for name in ("vae", "base", "reference-lora", "squeeze"))
    assert "aggregator, stage1_steps" in shown


def test_squeeze_recipe_trains_weights_that_squeeze_tiny_loads(tmp_path):
    from smg_plugins.squeeze_mllm.recipe import training_pipeline
    from smg_plugins.squeeze_mllm.training import _aggregator

    weights = _run(tmp_path / "run", steps=2)
    assert weights == tmp_path / "run" / "weights"
    trained = _tensors(weights)
    initial = training_pipeline(RecipeOptions(str(tmp_path / "unused")), "dla")
    start = {f"agg.{k}": v for k, v in _aggregator(initial).state_dict().items()}
    assert any(not torch.equal(start[k], trained[k]) for k in start), "training did not change the aggregator"
    lora_b = [v for k, v in trained.items() if k.startswith("lora.") and "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b), "stage 2 did not train the identity LoRA (B starts at 0)"
    loaded = SubjectPipeline.from_preset("squeeze-tiny", weights=str(weights), aggregator="dla",
                                         flux=str(tiny_flux_path()))  # the base it trained on, named as a folder
    state = _aggregator(loaded).state_dict()
    assert all(torch.equal(state[k[4:]], v) for k, v in trained.items() if k.startswith("agg."))
    sample = SubjectWorld("heldout", subjects=(1,))[0]
    assert loaded(sample.prompt, sample.subjects(), seed=0, num_inference_steps=1).images[0].size == (128, 128)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["losses"]) == 2  # one step of each stage


@pytest.mark.parametrize("stage1_steps", [1, 0], ids=["at-the-stage-boundary", "inside-stage-2"])
def test_squeeze_recipe_stopped_at_step_1_and_resumed_is_bit_identical(tmp_path, stage1_steps):
    straight = _tensors(_run(tmp_path / "straight", steps=2, stage1_steps=stage1_steps))
    _run(tmp_path / "split", steps=1, stage1_steps=stage1_steps)  # stopped after step 1, with its checkpoint
    resumed = _tensors(_run(tmp_path / "split", steps=2, stage1_steps=stage1_steps))  # step 2 on top
    losses = json.loads((tmp_path / "split" / "history.json").read_text())["losses"]
    assert len(losses) == 2, "the rerun did not continue from step 1"
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("args, says", [
    (["--recipe", "nope"], "Known recipes: 'aligngen', 'base', 'reference-lora', "),
    (["--recipe", "squeeze", "--option", "colour=red"], "its options are: aggregator, stage1_steps"),
    (["--recipe", "squeeze", "--option", "aggregator=mean"], "--option aggregator must be one of dla, lap"),
    (["--recipe", "squeeze", "--steps", "2", "--option", "stage1_steps=3"], "--option stage1_steps"),
    (["--recipe", "squeeze", "--lr-schedule", "cosine"], "--lr-schedule does not apply to the 'squeeze' recipe"),
    (["--recipe", "squeeze", "--vae", "somewhere"], "--vae does not apply"),
])
def test_bad_recipe_input_is_one_line(tmp_path, capsys, args, says):
    code = main(["train", "subjectworld", *args, "--out", str(tmp_path / "run"), "--quiet", "--threads", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "run").exists()  # nothing left behind by a refused run
