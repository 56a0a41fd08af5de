"""The tiny preset's SubjectWorld recipes: resumable, loadable, and the shipped weights' quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from smg_sdk.presets.tiny import TINY_DEFAULTS, tiny_flux_path

ROOT = Path(__file__).resolve().parents[1]


def _backend():
    from smg_sdk.backends.flux import FluxBackend

    return FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])


def test_pretraining_resumes_bit_identically(tmp_path):
    from smg_sdk.backends.flux.pretrain import PretrainConfig, encode_pool, pretrain

    config = PretrainConfig(str(tmp_path / "run"), max_steps=3, batch_size=2, pool_size=8, checkpoint_every=2,
                            progress=False, side=64)
    straight = _backend()
    pool = encode_pool(straight, config)
    pretrain(straight, config, pool, log=lambda line: None)
    stopped = PretrainConfig(str(tmp_path / "resumed"), max_steps=2, batch_size=2, pool_size=8, checkpoint_every=2,
                             progress=False, side=64)
    pretrain(_backend(), stopped, pool, log=lambda line: None)  # "killed" after step 2's checkpoint
    resumed = _backend()
    pretrain(resumed, PretrainConfig(**{**stopped.__dict__, "max_steps": 3}), pool, log=lambda line: None)
    for name in ("transformer", "text_encoder_2"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not torch.equal(next(iter(straight.transformer.state_dict().values())),
                           next(iter(_backend().transformer.state_dict().values()))), "training changed nothing"


def _smg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}
    return subprocess.run([sys.executable, "-m", "smg_sdk.cli", "train", "subjectworld", *args, "--quiet",
                           "--threads", "1"], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_base_and_reference_lora_recipes_write_loadable_results(tmp_path):
    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.backends.flux.plugin import tiny_pipeline

    base = _smg("--recipe", "base", "--out", "base", "--steps", "2", "--batch-size", "2", "--pool-size", "4",
                "--eval-samples", "1", "--eval-every", "2", "--describe", "0.5", "--caption-dropout", "0.2",
                cwd=tmp_path)
    assert base.returncode == 0, base.stderr
    assert "identity=" in base.stdout and "prior=" in base.stdout  # the held-out evaluation line
    assert "described_identity=" in base.stdout  # what the base draws when the text names the identity
    assert " cfg_instruction=" in base.stdout and "cfg_described_identity=" in base.stdout  # and with true CFG
    history = json.loads((tmp_path / "base" / "history.json").read_text())
    assert len(history["losses"]) == 2 and history["evaluations"][0]["step"] == 2
    again = _smg("--recipe", "base", "--out", "base", "--steps", "2", cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr
    lora = _smg("--recipe", "reference-lora", "--from", "base/flux", "--out", "lora", "--steps", "1",
                "--batch-size", "2", "--eval-samples", "0", "--lora-rank", "4", "--caption-dropout", "0.5",
                cwd=tmp_path)
    assert lora.returncode == 0, lora.stderr
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "lora" / "adapter" / "pytorch_lora_weights.safetensors")
    assert {w.shape[0] for k, w in weights.items() if "lora_A" in k} == {4}
    backend = FluxBackend.from_pretrained(tmp_path / "base" / "flux", max_sequence_length=48)
    backend.load_stream_adapter("subject", tmp_path / "lora" / "adapter" / "pytorch_lora_weights.safetensors")
    pipe = tiny_pipeline(backend, adapter="subject")
    from smg_sdk.data.subjectworld import SubjectWorld

    sample = SubjectWorld("heldout", subjects=(1,))[0]
    assert pipe(sample.prompt, sample.subjects(), seed=0, num_inference_steps=1).images[0].size == (128, 128)


def test_train_command_bad_input_is_one_line(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for args, says in ((["--recipe", "base", "--out", "mine"], "not empty"),
                       (["--recipe", "base", "--out", "x", "--steps", "0"], "--steps"),
                       (["--recipe", "base", "--out", "x", "--budget-minutes", "-1"], "--budget-minutes"),
                       (["--recipe", "base", "--out", "x", "--describe", "1.5"], "--describe"),
                       (["--recipe", "base", "--out", "x", "--caption-dropout", "1"], "--caption-dropout"),
                       (["--recipe", "reference-lora", "--out", "x", "--lora-rank", "0"], "--lora-rank")):
        run = _smg(*args, cwd=tmp_path)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and says in lines[0], run.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_learning_rate_schedules_and_their_resume_keys(tmp_path):
    import pytest

    from smg_sdk.backends.flux.pretrain import PretrainConfig, lr_factor
    from smg_sdk.errors import ConfigError

    constant = PretrainConfig(str(tmp_path), max_steps=1000, warmup_steps=10)
    cosine = PretrainConfig(str(tmp_path), max_steps=1000, warmup_steps=10, lr_schedule="cosine")
    assert [lr_factor(constant, s) for s in (0, 9, 500, 999)] == [0.1, 1.0, 1.0, 1.0]
    assert lr_factor(cosine, 9) == pytest.approx(1.0, abs=1e-3)
    assert lr_factor(cosine, 500) == pytest.approx(0.5)
    assert lr_factor(cosine, 1000) == pytest.approx(0.0, abs=1e-12)
    # a constant run's settings are those of runs made before the options existed; a cosine's length matters
    assert "lr_schedule" not in constant.run_config() and "subjects" not in constant.run_config()
    assert cosine.run_config()["max_steps"] == 1000
    with pytest.raises(ConfigError, match="lr_schedule"):
        PretrainConfig(str(tmp_path), lr_schedule="linear")


def test_reference_lora_recipe_is_reproducible(tmp_path):
    """Same options, same adapter: the LoRA's initial values are seeded (runs in several processes rely on it)."""
    from safetensors.torch import load_file

    from smg_sdk.backends.flux.recipes import run_reference_lora
    from smg_sdk.training.recipes import RecipeOptions

    adapters = []
    for name in ("a", "b"):
        options = RecipeOptions(str(tmp_path / name), steps=1, batch_size=1, eval_samples=0, progress=False,
                                pool_size=2)
        adapters.append(load_file(run_reference_lora(options, log=lambda line: None)))
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])


_KILLED_RUN = """
import os, signal, sys
from smg_sdk.backends.flux import FluxBackend
from smg_sdk.backends.flux.pretrain import PretrainConfig, pretrain
from smg_sdk.presets.tiny import TINY_DEFAULTS, tiny_flux_path

backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=TINY_DEFAULTS["max_sequence_length"])
config = PretrainConfig(sys.argv[1], max_steps=3, batch_size=2, pool_size=8, checkpoint_every=2, progress=False, side=64)
kill = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == 2 else {}  # right after checkpoint-2
pretrain(backend, config, evaluate=kill, eval_every=2, log=lambda line: None)
"""


def test_pretraining_resumes_bit_identically_after_sigkill(tmp_path):
    """A real kill (SIGKILL, no cleanup) after step 2's checkpoint; the resumed run equals a straight one."""
    import signal

    from smg_sdk.backends.flux.pretrain import PretrainConfig, pretrain

    run = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(run)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    config = PretrainConfig(str(run), max_steps=3, batch_size=2, pool_size=8, checkpoint_every=2, progress=False,
                            side=64)
    resumed, straight = _backend(), _backend()
    assert len(pretrain(resumed, config, log=lambda line: None).losses) == 1  # only step 3 ran after the kill
    pretrain(straight, PretrainConfig(**{**config.__dict__, "output_dir": str(tmp_path / "straight")}),
             log=lambda line: None)
    for name in ("transformer", "text_encoder_2"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_subject_weighted_pretraining_loss(tmp_path):
    import dataclasses

    import pytest

    from smg_sdk.backends.flux.pretrain import PretrainConfig, encode_pool, flow_loss
    from smg_sdk.errors import ConfigError

    plain = PretrainConfig(str(tmp_path), batch_size=2, pool_size=4, progress=False, side=64, subjects=(1,))
    weighted = dataclasses.replace(plain, subject_weight=4.0)
    backend = _backend()
    pool = encode_pool(backend, plain)
    assert pool.subject_cells.shape == (4, 16) and pool.subject_cells.any(dim=1).all()  # every scene has a subject
    assert not pool.subject_cells.all()  # and background
    with torch.no_grad():
        base = flow_loss(backend, pool, plain, 0)
        uniform = [flow_loss(backend, dataclasses.replace(pool, subject_cells=torch.full_like(pool.subject_cells, v)),
                             weighted, 0) for v in (True, False)]
        focused = flow_loss(backend, pool, weighted, 0)
    assert all(torch.allclose(u, base, rtol=1e-5) for u in uniform)  # uniform weights: the plain mean
    assert not torch.allclose(focused, base, rtol=1e-3)
    assert "subject_weight" not in plain.run_config() and weighted.run_config()["subject_weight"] == 4.0
    with pytest.raises(ConfigError, match="subject_weight"):
        PretrainConfig(str(tmp_path), subject_weight=-1)


def test_described_pretraining_pool(tmp_path):
    import pytest

    from smg_sdk.backends.flux.pretrain import PretrainConfig, encode_pool
    from smg_sdk.data.subjectworld.vocab import COLOURS
    from smg_sdk.errors import ConfigError

    plain = PretrainConfig(str(tmp_path), pool_size=8, progress=False, side=64, subjects=(1,))
    described = PretrainConfig(str(tmp_path), pool_size=8, progress=False, side=64, subjects=(1,), describe=1.0)
    backend = _backend()
    words = [set(c.split()) & set(COLOURS) for c in encode_pool(backend, described).captions]
    assert all(words)  # every caption names its subject's colours
    assert not any(set(c.split()) & set(COLOURS) for c in encode_pool(backend, plain).captions)
    assert "describe" not in plain.run_config() and described.run_config()["describe"] == 1.0
    with pytest.raises(ConfigError, match="describe"):
        PretrainConfig(str(tmp_path), describe=2)


def test_caption_dropout_trains_the_empty_prompt(tmp_path):
    import dataclasses

    import pytest

    from smg_sdk.backends.flux.pretrain import PretrainConfig, _dropped_captions, encode_pool, flow_loss
    from smg_sdk.errors import ConfigError

    plain = PretrainConfig(str(tmp_path), batch_size=8, pool_size=8, progress=False, side=64, subjects=(1,))
    dropout = dataclasses.replace(plain, caption_dropout=0.5)
    backend = _backend()
    pool = encode_pool(backend, plain)
    rows = list(range(8))
    captions, pooled = _dropped_captions(backend, pool, plain, 0, rows)
    assert captions == pool.captions and torch.equal(pooled, pool.pooled)  # no dropout: unchanged
    empty = backend.encode_pooled("").cpu()
    dropped = [(c, p) for step in range(4) for c, p in zip(*_dropped_captions(backend, pool, dropout, step, rows))]
    blank = [p for c, p in dropped if c == ""]
    assert 4 < len(blank) < 28  # about half of 32 captions
    assert all(torch.allclose(p, empty[0]) for p in blank)  # with the empty prompt's CLIP vector
    assert all(p in pool.pooled for c, p in dropped if c) and {c for c, _ in dropped if c} <= set(pool.captions)
    assert _dropped_captions(backend, pool, dropout, 3, rows)[0] == _dropped_captions(backend, pool, dropout, 3, rows)[0]
    with torch.no_grad():
        assert not torch.allclose(flow_loss(backend, pool, plain, 0), flow_loss(backend, pool, dropout, 0))
    assert "caption_dropout" not in plain.run_config() and dropout.run_config()["caption_dropout"] == 0.5
    for bad in (1.0, -0.1, True):
        with pytest.raises(ConfigError, match="caption_dropout"):
            PretrainConfig(str(tmp_path), caption_dropout=bad)


def test_reference_pairs_with_caption_dropout_keep_their_references():
    from smg_sdk.training.recipes import SubjectWorldSamples
    from smg_sdk.data.subjectworld import SubjectWorld

    world = SubjectWorld("train", "reference", 0, subjects=(1,), side=64)
    plain, dropped = SubjectWorldSamples(world, 40), SubjectWorldSamples(world, 40, caption_dropout=0.5, seed=3)
    blank = [i for i in range(40) if dropped[i].prompt == ""]
    assert 5 < len(blank) < 35 and all(plain[i].prompt for i in range(40))
    assert blank == [i for i in range(40) if dropped[i].prompt == ""]  # the same samples every time
    for i in blank[:3]:
        assert len(dropped[i].subjects) == len(plain[i].subjects) == 1
        assert dropped[i].target.tobytes() == plain[i].target.tobytes()
    assert blank != [i for i in range(40) if SubjectWorldSamples(world, 40, caption_dropout=0.5, seed=4)[i].prompt == ""]


def test_reference_lora_resume_checks_what_the_samples_are(tmp_path):
    """The samples' settings (prompt dropout, subject weight, pool) are part of the run: a resume with
    another dropout is refused, one with the same settings continues."""
    import pytest

    from smg_sdk.backends.flux.recipes import run_reference_lora
    from smg_sdk.errors import ConfigError
    from smg_sdk.training.recipes import RecipeOptions

    def options(steps: int, dropout: float) -> RecipeOptions:
        return RecipeOptions(str(tmp_path / "run"), steps=steps, batch_size=1, eval_samples=0, progress=False,
                             pool_size=2, caption_dropout=dropout)

    run_reference_lora(options(1, 0.5), log=lambda line: None)
    with pytest.raises(ConfigError, match="caption_dropout"):
        run_reference_lora(options(2, 0.0), log=lambda line: None)
    run_reference_lora(options(2, 0.5), log=lambda line: None)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["losses"]) == 2
