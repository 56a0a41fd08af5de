"""AlignGen training: reference dropout and concept substitution rates, what trains, the loss falls."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from aligngen_fixtures import one_torch_thread  # noqa: F401
from conftest import make_image
from smg_sdk import SMGError, Subject, SubjectPipeline
from smg_sdk.training import TrainerConfig, TrainingSample
from smg_plugins.aligngen.hierarchy import ConceptHierarchy
from smg_plugins.aligngen.training import (
    AlignGenTrainingStrategy,
    ConceptSubstitution,
    ReferenceDropout,
    aligngen_trainable,
    aligngen_trainer,
)

N = 4000
TOLERANCE = 0.03  # > 4 standard deviations of a rate measured on 4000 draws


def sample(words=("robot", "acoustic guitar"), prompt="a photo of <1> next to <2>") -> TrainingSample:
    subjects = [Subject(make_image(i, 16), w) for i, w in enumerate(words)]
    return TrainingSample(subjects, prompt, make_image(9, 16))


def is_black(subject: Subject) -> bool:
    return subject.pil().getextrema() == ((0, 0), (0, 0), (0, 0))


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_reference_dropout_rate(p):
    hook = ReferenceDropout(p)
    base = sample()
    dropped = 0
    for i in range(N):
        out = hook.on_sample(base, random.Random(i))
        flags = [is_black(s) for s in out.subjects]
        assert flags[0] == flags[1] == out.extras["reference_dropped"][0]  # one draw per sample
        assert [s.class_word for s in out.subjects] == ["robot", "acoustic guitar"]
        assert out.subjects[0].pil().size == base.subjects[0].pil().size
        dropped += flags[0]
    assert abs(dropped / N - p) < TOLERANCE
    assert not any(is_black(s) for s in base.subjects)  # the dataset's sample is left alone


def test_reference_dropout_per_subject_is_independent():
    hook = ReferenceDropout(0.5, per_subject=True)
    pairs = Counter(tuple(is_black(s) for s in hook.on_sample(sample(), random.Random(i)).subjects) for i in range(N))
    for pattern in [(False, False), (False, True), (True, False), (True, True)]:
        assert abs(pairs[pattern] / N - 0.25) < TOLERANCE


def test_concept_substitution_rate_and_choices():
    hook = ConceptSubstitution(0.3)
    base = sample(words=("acoustic guitar", "zorblax"))
    changed, choices = 0, Counter()
    for i in range(N):
        out = hook.on_sample(base, random.Random(i))
        assert out.subjects[1].class_word == "zorblax"  # no ancestors: never substituted
        word = out.subjects[0].class_word
        if word != "acoustic guitar":
            changed += 1
            choices[word] += 1
        assert out.prompt == base.prompt  # placeholders: the class word is what the prompt shows
    assert abs(changed / N - 0.3) < TOLERANCE
    assert set(choices) == {"guitar", "musical instrument"}
    assert abs(choices["guitar"] / changed - 0.5) < 0.06  # parent or broader category, at random


def test_concept_substitution_without_placeholders_rewrites_the_prompt():
    hook = ConceptSubstitution(1.0)
    base = TrainingSample([Subject(make_image(0, 16), "corgi")], "a corgi on the corgi beach", make_image(1, 16))
    out = hook.on_sample(base, random.Random(0))
    assert out.subjects[0].class_word in ("dog", "animal")
    assert out.prompt == f"a {out.subjects[0].class_word} on the corgi beach"


def test_hierarchy_is_extendable_and_refuses_cycles():
    h = ConceptHierarchy.default()
    assert h.ancestors("Acoustic  Guitar") == ["guitar", "musical instrument"]
    extended = h.extend({"ukulele": "guitar"})
    assert extended.ancestors("ukulele") == ["guitar", "musical instrument"] and "ukulele" not in h
    with pytest.raises(SMGError, match="cycle"):
        extended.add("musical instrument", "ukulele")
    with pytest.raises(SMGError, match="probability"):
        ReferenceDropout(1.5)
    strategy = AlignGenTrainingStrategy(extra_parents={"zorblax": "alien"})
    assert strategy.hooks()[1].hierarchy.ancestors("zorblax") == ["alien"]


def dataset():
    return [TrainingSample([Subject(make_image(i), w)], f"a photo of <1> {where}", make_image(10 + i))
            for i, (w, where) in enumerate([("robot", "on grass"), ("acoustic guitar", "in the snow"),
                                            ("corgi", "on the beach")])]


@pytest.fixture()
def pipe():
    """The seeded initial version (these tests train from it), also once trained weights ship."""
    return SubjectPipeline.from_preset("aligngen-tiny", trained=False)


def test_trainer_applies_strategies_at_their_rates(pipe, tmp_path):
    trainer = aligngen_trainer(pipe, dataset(), TrainerConfig(output_dir=str(tmp_path), max_steps=1, progress=False),
                               AlignGenTrainingStrategy(reference_dropout=0.5, substitution=0.4))
    drawn = [trainer.sample_at(step, 0) for step in range(1500)]
    dropped = sum(s.extras["reference_dropped"][0] for s in drawn) / len(drawn)
    substituted = sum(s.extras["concept_substituted"][0] is not None for s in drawn) / len(drawn)
    assert abs(dropped - 0.5) < 0.045 and abs(substituted - 0.4) < 0.045
    assert [s.prompt for s in drawn[:20]] == [trainer.sample_at(step, 0).prompt for step in range(20)]  # seeded


def test_trainable_is_sstar_dem_and_reference_lora(pipe):
    params = aligngen_trainable(pipe)
    groups = Counter(name.split(".")[0] for name in params)
    assert set(groups) == {"sstar0", "dem0", "adapter"}
    assert all(".aligngen-ref." in n for n in params if n.startswith("adapter"))
    assert params["sstar0.t5"].shape == (32,) and params["sstar0.clip"].shape == (32,)
    assert set(aligngen_trainable(pipe, lora=False)) == set(params) - {n for n in params if n.startswith("adapter")}


def test_few_steps_lower_the_loss_on_a_fixed_batch(pipe, tmp_path):
    config = TrainerConfig(output_dir=str(tmp_path), max_steps=12, learning_rate=3e-2, checkpoint_every=100,
                           progress=False)
    trainer = aligngen_trainer(pipe, dataset(), config)  # the paper's strategies: dropout 0.5, substitution
    fixed = dataset()
    base = {k: v.clone() for k, v in pipe.backend.transformer.state_dict().items() if "lora_" not in k}
    start = {k: v.detach().clone() for k, v in trainer.trainable.items()}
    before = trainer.evaluate(fixed)
    trainer.train()
    after = trainer.evaluate(fixed)
    print(f"AlignGen loss on the fixed batch: before {before:.4f}, after {after:.4f}")
    assert after < before * 0.95, (before, after)
    moved = {name.split(".")[0] for name, p in trainer.trainable.items() if not torch.equal(p.detach(), start[name])}
    assert moved == {"sstar0", "dem0", "adapter"}
    after_base = pipe.backend.transformer.state_dict()
    assert all(torch.equal(after_base[k], v) for k, v in base.items())
