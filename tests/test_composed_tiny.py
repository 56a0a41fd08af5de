"""``composed-tiny``: AlignGen + Squeeze-MLLM + MUSIC on the tiny FLUX, each with its plugin's shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smg_sdk import ConfigError, SubjectPipeline
from smg_sdk.data.subjectworld import SubjectWorld


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
])
def test_bad_switches_name_the_option(options, needle):
    with pytest.raises(ConfigError, match=needle):
        SubjectPipeline.from_preset("composed-tiny", **options)


def test_saved_composed_pipeline_reloads_and_draws_the_same_image(composed, tmp_path):
    sample = SubjectWorld("heldout", "reference", 0, subjects=(2,))[0]
    loaded = SubjectPipeline.from_pretrained(composed.save_pretrained(tmp_path / "composed"))
    images = [np.asarray(pipe(sample.prompt, sample.references, seed=3, num_inference_steps=2).images[0])
              for pipe in (composed, loaded)]
    assert images[0].shape == (128, 128, 3)
    np.testing.assert_array_equal(images[0], images[1])
