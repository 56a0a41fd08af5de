"""AlignGen end to end: the aligngen-tiny preset from Python and the CLI, LoRA routing, save/reload."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from aligngen_fixtures import one_torch_thread, quiet, redux_encoder, tiny_backend  # noqa: F401
from conftest import make_image
from smg_sdk import Subject, SubjectPipeline
from smg_sdk.attention.masks import JointAttentionMask, JointLayout
from smg_sdk.backends.flux.lora import lora_layers
from smg_sdk.plugins import get_registry
from smg_sdk.training import TrainerConfig, TrainingSample
from smg_plugins.aligngen.slots import read_slots
from smg_plugins.aligngen.training import AlignGenTrainingStrategy, aligngen_trainer
from smg_sdk.presets.tiny import TINY_DEFAULTS

DEFAULT_SIZE = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"])  # the tiny preset's default image size

ROOT = Path(__file__).resolve().parents[3]
TWO = ("a photo of <1> next to <2>", [Subject(make_image(0), "robot"), Subject(make_image(1), "guitar")])
ONE = ("a photo of <1> on the beach", [Subject(make_image(0), "robot")])


@pytest.fixture()
def pipe():
    return quiet(SubjectPipeline.from_preset("aligngen-tiny"))


def latents(pipe, prompt, subjects, steps=2, **kw):
    return pipe(prompt, subjects, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                output_type="pt", **kw).images


def test_registered_names():
    registry = get_registry()
    for kind, name in [("encoder", "aligngen-text"), ("encoder", "redux"), ("aggregator", "dem"),
                       ("rule", "aligngen-mask"), ("preset", "aligngen-tiny"), ("preset", "aligngen")]:
        assert (kind, name) in registry and registry.owner(kind, name) == "aligngen"


@pytest.mark.parametrize("prompt,subjects", [ONE, TWO], ids=["one-subject", "two-subjects"])
def test_python_end_to_end(pipe, prompt, subjects):
    out = pipe(prompt, subjects, seed=0, num_images_per_prompt=2)
    assert len(out.images) == 2 and all(im.size == DEFAULT_SIZE for im in out.images)
    conditions = pipe.encode(pipe.make_request(prompt, subjects, height=64, width=64))  # a 4 x 4 token grid
    assert [s.name for s in conditions] == ["prompt"] + [f"ref{k + 1}" for k in range(len(subjects))]
    refs = [conditions.get(f"ref{k + 1}") for k in range(len(subjects))]
    assert all(r.adapter == "aligngen-ref" and r.mode == "concat" for r in refs)
    assert torch.equal(refs[0].position_ids[0], torch.tensor([0.0, 0.0, -4.0]))  # omini: shifted left by W
    # the rules in the preset: only S*/concept tokens of subject k see reference k; references are isolated
    layout = JointLayout.build(conditions, 16)
    mask = JointAttentionMask(layout)
    for rule in pipe.rules:
        rule.apply(mask, conditions, None)
    slots = read_slots(conditions, "prompt")
    for k in range(len(subjects)):
        ref = layout.group(f"ref{k + 1}")
        seen = mask.allowed[0, : layout.text_length, ref.start].nonzero().flatten().tolist()
        assert seen == sorted(p for s in slots if s.subject == k for p in s.positions)
        others = [g for g in layout.groups if g.kind == "reference" and g.name != ref.name]
        assert all(not mask.allowed[0, ref.span, o.span].any() for o in others)
    # the reference matters
    changed = [Subject(make_image(7), s.class_word) for s in subjects]
    assert (latents(pipe, prompt, subjects) - latents(pipe, prompt, changed)).abs().max() > 1e-4


def test_reference_lora_leaves_other_tokens_unchanged(pipe):
    prompt, subjects = TWO
    block = pipe.backend.transformer.transformer_blocks[0]

    def run():
        acts: dict = {}
        def keep(key):
            return lambda m, i, o: acts.setdefault(key, []).append(o.clone())

        hooks = [block.attn.to_q.register_forward_hook(keep("image")),
                 block.attn.add_q_proj.register_forward_hook(keep("text"))]
        try:
            out = latents(pipe, prompt, subjects, steps=1)
        finally:
            for h in hooks:
                h.remove()
        return out, acts

    base, base_acts = run()
    torch.manual_seed(0)
    with torch.no_grad():
        for _, layer in lora_layers(pipe.backend.transformer, "aligngen-ref"):
            layer.lora_B["aligngen-ref"].weight.normal_(0, 0.5)
    routed, acts = run()
    image = 16  # 64x64 -> 4x4 packed tokens; two 16-token references follow in concat mode
    assert torch.allclose(acts["image"][0][:, :image], base_acts["image"][0][:, :image], atol=1e-6)
    assert torch.allclose(acts["text"][0], base_acts["text"][0], atol=1e-6)
    assert not torch.allclose(acts["image"][0][:, image:], base_acts["image"][0][:, image:], atol=1e-4)
    assert (routed - base).abs().max() > 1e-4  # it acts on the image only through attention to references


def test_trained_weights_reload_to_the_same_image(pipe, tmp_path):
    prompt, subjects = TWO
    untrained = latents(pipe, prompt, subjects)
    data = [TrainingSample(subjects, prompt, make_image(12)), TrainingSample(subjects[:1], ONE[0], make_image(13))]
    config = TrainerConfig(output_dir=str(tmp_path / "run"), max_steps=3, learning_rate=3e-2, checkpoint_every=100,
                           progress=False)
    aligngen_trainer(pipe, data, config, AlignGenTrainingStrategy(reference_dropout=0.0)).train()
    trained = latents(pipe, prompt, subjects)
    assert (trained - untrained).abs().max() > 1e-4
    pipe.save_pretrained(tmp_path / "saved")
    files = sorted(str(p.relative_to(tmp_path / "saved")) for p in (tmp_path / "saved").rglob("*.safetensors"))
    assert "components/encoders_0.safetensors" in files and "components/aggregators_0.safetensors" in files
    assert any("adapters/aligngen-ref" in f for f in files)
    reloaded = quiet(SubjectPipeline.from_pretrained(tmp_path / "saved"))
    saved = {**pipe.encoders[0].state_dict(), **pipe.aggregators[0].state_dict(),
             **pipe.backend.adapter_state_dict("aligngen-ref")}
    loaded = {**reloaded.encoders[0].state_dict(), **reloaded.aggregators[0].state_dict(),
              **reloaded.backend.adapter_state_dict("aligngen-ref")}
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    # a freshly loaded T5 differs from the original in the last float bits (as in the core's save/load test)
    assert torch.allclose(latents(reloaded, prompt, subjects), trained, atol=1e-5)


def test_redux_tokens_match_flux_prior_redux(tiny_backend, redux_encoder):
    from diffusers import FluxPriorReduxPipeline

    prior = FluxPriorReduxPipeline(
        image_encoder=redux_encoder.vision, feature_extractor=redux_encoder.processor,
        image_embedder=redux_encoder.redux, text_encoder=tiny_backend.text_encoder, tokenizer=tiny_backend.tokenizer,
        text_encoder_2=tiny_backend.text_encoder_2, tokenizer_2=tiny_backend.tokenizer_2,
    )
    image = make_image(3)
    theirs = prior(image, prompt="").prompt_embeds[:, -64:]
    ours = redux_encoder.image_tokens([image])
    assert ours.shape == (1, 64, 32)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_cli_two_subjects(tmp_path):
    make_image(0).save(tmp_path / "a.png")
    make_image(1).save(tmp_path / "b.png")
    out = tmp_path / "aligngen" / "out.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "smg_sdk.cli", "generate", "--preset", "aligngen-tiny", "--prompt",
         "a photo of <1> next to <2>", "--subject", f"{tmp_path / 'a.png'}:robot", "--subject",
         f"{tmp_path / 'b.png'}:guitar", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == DEFAULT_SIZE and str(out) in proc.stdout


def test_inference_builds_no_autograd_graph(pipe):
    """S* and the DEM are trainable, but a pipeline call (like a diffusers one) runs without autograd."""
    seen = []
    handle = pipe.aggregators[0].register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    try:
        pipe(*ONE, num_inference_steps=1, seed=0)
        assert seen == [False]
        request = pipe.make_request(*ONE)
        assert pipe.encode(request).get("prompt").tokens.requires_grad  # training encodes with gradients
    finally:
        handle.remove()


def test_composes_with_the_squeeze_plugin_streams():
    """AlignGen's S*, DEM and mask on the T5 stream beside Squeeze-MLLM's stream, composed by registered name."""
    from smg_sdk import SMGError
    from smg_sdk.interfaces import component_name

    registry = get_registry()
    if ("preset", "squeeze-tiny") not in registry:
        pytest.skip("the squeeze-mllm plugin is not installed")
    try:
        squeeze = quiet(SubjectPipeline.from_preset("squeeze-tiny"))
    except SMGError as exc:  # pragma: no cover - depends on the other plugin's state
        pytest.skip(f"squeeze-tiny cannot be built here: {exc}")
    prompt, subjects = TWO
    alone = squeeze.encode(squeeze.make_request(prompt, subjects))
    # AlignGen's text encoder provides the pooled embedding instead of flux-text, plus its T5 stream with S*
    encoders = [registry.build("encoder", "aligngen-text", stream_name="t5-prompt", t5_dim=32, clip_dim=32),
                *[e for e in squeeze.encoders if component_name(e) != "flux-text"], registry.build("encoder", "redux")]
    combined = quiet(SubjectPipeline(
        squeeze.backend, encoders,
        [*squeeze.aggregators, registry.build("aggregator", "dem", width=32, heads=4, stream="t5-prompt")],
        [*squeeze.rules, registry.build("rule", "aligngen-mask", text_streams=["t5-prompt"])],
        squeeze.schedule, defaults=squeeze.defaults,
    ))
    conditions = combined.encode(combined.make_request(prompt, subjects))
    squeeze_text = [s.name for s in alone.text]
    assert {"t5-prompt", *squeeze_text} <= {s.name for s in conditions.text}
    for name in squeeze_text:
        assert torch.equal(conditions.get(name).tokens, alone.get(name).tokens)  # Squeeze's streams untouched
    before = SubjectPipeline(squeeze.backend, encoders).encode(combined.make_request(prompt, subjects))
    changed = (conditions.get("t5-prompt").tokens != before.get("t5-prompt").tokens).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [s.sstar for s in read_slots(conditions, "t5-prompt")]
    assert combined(prompt, subjects, seed=0, num_inference_steps=2).images[0].size == DEFAULT_SIZE


def test_aligngen_preset_on_local_folders():
    """The general preset takes local FLUX/SigLIP/Redux folders (here the tiny ones) and the paper's defaults."""
    from smg_sdk import ConditionError
    from smg_sdk.presets.tiny import tiny_flux_path, tiny_redux_path, tiny_siglip_path

    pipe = quiet(SubjectPipeline.from_preset("aligngen", path=str(tiny_flux_path()),
                                             siglip_path=str(tiny_siglip_path()), redux_path=str(tiny_redux_path()),
                                             rank=4))
    assert pipe.defaults["num_inference_steps"] == 28
    assert pipe.backend.transformer.peft_config["aligngen-ref"].r == 4
    out = pipe(*ONE, height=64, width=64, num_inference_steps=1, seed=0)
    assert out.images[0].size == (64, 64)
    with pytest.raises(ConditionError, match="siglip_path"):
        SubjectPipeline.from_preset("aligngen", path=str(tiny_flux_path()))
    with pytest.raises(ConditionError, match="Unknown AlignGen option"):
        SubjectPipeline.from_preset("aligngen-tiny", ranks=4)
