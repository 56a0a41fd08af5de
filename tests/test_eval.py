"""The DreamBench loader on the real subset (skipped when absent) and the metrics."""

from __future__ import annotations

import pytest

from conftest import DREAMBENCH, make_image
from smg_sdk.errors import ModelLoadError
from smg_sdk.eval import SubjectMetrics, load_dreambench
from smg_sdk.types import Request

needs_dreambench = pytest.mark.skipif(not (DREAMBENCH / "prompts_and_classes.txt").is_file(),
                                      reason="../shared/dreambench is not beside the checkout")


@needs_dreambench
def test_loads_the_real_dreambench_layout():
    bench = load_dreambench(DREAMBENCH)
    names = {s.name for s in bench.subjects}
    assert {"backpack", "cat", "dog", "duck_toy", "teapot"} <= names
    assert len(bench.object_prompts) == len(bench.live_prompts) == 25
    dog = bench.get("dog")
    assert dog.live and dog.class_word == "dog" and len(dog.images) >= 2
    assert not bench.get("teapot").live
    assert bench.prompts_for(dog)[10] == "a <1> wearing a red hat"
    for prompt in bench.prompts_for(dog) + bench.prompts_for(bench.get("teapot")):
        request = Request(prompt, [dog.subject(0)], height=64, width=64)
        assert request.text_prompt.count("dog") >= 1
    assert dog.subject(1).pil().mode == "RGB"


def test_missing_folder_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="prompts_and_classes.txt"):
        load_dreambench(tmp_path)


def test_metrics_are_similarities():
    metrics = SubjectMetrics()
    a, b = make_image(0), make_image(5)
    same = metrics.score(a, [a], "a photo of a dog")
    other = metrics.score(a, [b], "a photo of a dog")
    assert same.dino == pytest.approx(1.0, abs=1e-5) and same.clip_i == pytest.approx(1.0, abs=1e-5)
    assert other.dino < same.dino and other.clip_i < same.clip_i
    assert -1.0 <= same.clip_t <= 1.0 and same.clip_t == pytest.approx(other.clip_t)
