"""smg-spotlight's own tests: the conformance kit plus what each component visibly does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import JointAttentionMask, JointLayout, Subject, SubjectPipeline, get_registry, list_plugins
from smg_sdk.testing import check_aggregator, check_rule
from smg_spotlight.spotlight import centre_box


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8)))


@pytest.fixture(scope="module")
def pipe():
    pipe = SubjectPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_discovered_through_entry_point():
    info = {p.name: p for p in list_plugins()}["spotlight"]
    assert info.source == "entry point" and info.version == "0.2.0"
    assert info.components == {"aggregator": ["word-emphasis"], "rule": ["spotlight"]}


def test_word_emphasis_changes_only_subject_tokens(pipe):
    request = pipe.make_request("a photo of <1> on the beach", [Subject(picture(0), "dog")])
    conditions = pipe.encode(request)
    out = check_aggregator(get_registry().build("aggregator", "word-emphasis", factor=2.0), conditions, request)
    positions = conditions.meta["subject_tokens"]["prompt"][0]
    before, after = conditions.get("prompt").tokens, out.get("prompt").tokens
    assert positions and torch.allclose(after[:, positions], 2 * before[:, positions])
    others = [i for i in range(before.shape[1]) if i not in positions]
    assert torch.equal(after[:, others], before[:, others])


def test_spotlight_blocks_references_outside_the_box(pipe):
    request = pipe.make_request("<1> in a garden", [Subject(picture(1), "cat")], height=64, width=64)
    conditions = pipe.encode(request)
    mask = check_rule(get_registry().build("rule", "spotlight", fraction=0.5), conditions, request, image_tokens=16)
    fresh = JointAttentionMask(JointLayout.build(conditions, 16))
    get_registry().build("rule", "spotlight", fraction=0.5).apply(fresh, conditions, request)
    image, ref = fresh.layout.group("image"), fresh.layout.group("ref1")
    box = centre_box(4, 4, 0.5)
    seen = fresh.allowed[0, image.span][:, ref.span].all(dim=1)
    assert torch.equal(seen, box) and int(box.sum()) == 4
    assert mask.allowed.shape == fresh.allowed.shape


def test_spotlight_visibly_changes_the_image(pipe):
    subjects = [Subject(picture(2), "dog")]
    call = dict(seed=0, num_inference_steps=3, output_type="np")
    plain = pipe("<1> on the beach", subjects, **call).images
    pipe.rules.append(get_registry().build("rule", "spotlight", fraction=0.5))
    try:
        lit = pipe("<1> on the beach", subjects, **call).images
    finally:
        pipe.rules.pop()
    assert np.abs(plain - lit).max() > 1e-3


def test_smg_spotlight_command_prints_the_box():
    smg = [sys.executable, "-m", "smg_sdk.cli", "spotlight", "--height", "64", "--width", "64"]
    shown = subprocess.run(smg, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    grid = shown.stdout.splitlines()[1:]
    assert grid == ["....", ".##.", ".##.", "...."]
    assert torch.equal(torch.tensor([[c == "#" for c in row] for row in grid]).flatten(), centre_box(4, 4, 0.5))
    refused = subprocess.run([*smg, "--fraction", "2"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("smg: error: spotlight fraction")
