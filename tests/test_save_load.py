"""SubjectPipeline.save_pretrained / from_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import use_subject_adapter
from safetensors.torch import load_file, save_file

from smg_sdk import Subject, SubjectPipeline
from smg_sdk.errors import ModelLoadError, SMGError, WeightsMismatchError
from smg_sdk.manifest import sha256_file

SIZE = dict(height=64, width=64)


@pytest.fixture()
def tiny_pipe():
    pipe = SubjectPipeline.from_preset("tiny", reference_mode="cached", position="omini")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, images):
    return pipe("a photo of <1> next to <2>", [Subject(images[0], "dog"), Subject(images[1], "cat")],
                seed=0, num_inference_steps=2, output_type="latent", **SIZE).images


def test_save_load_same_output(tiny_pipe, images, tmp_path):
    use_subject_adapter(tiny_pipe)
    before = generate(tiny_pipe, images)
    folder = tiny_pipe.save_pretrained(tmp_path / "saved")
    manifest = json.loads((folder / "smg_pipeline.json").read_text())
    assert [e["name"] for e in manifest["encoders"]] == ["flux-text", "vae-reference"]
    assert manifest["backend"]["adapters"]["subject"]["stream"] is True
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    loaded = SubjectPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    after = generate(loaded, images)
    assert torch.allclose(before, after, atol=1e-6)
    # and the adapter file is a standard diffusers LoRA file
    from diffusers import FluxPipeline

    state = FluxPipeline.lora_state_dict(str(folder / "backend" / manifest["backend"]["adapters"]["subject"]["file"]))
    assert any("lora_A" in k for k in state)


def test_tampered_weights_name_the_tensor(tiny_pipe, tmp_path):
    use_subject_adapter(tiny_pipe)
    folder = tiny_pipe.save_pretrained(tmp_path / "saved")
    file = next((folder / "backend" / "adapters").rglob("*.safetensors"))
    state = load_file(str(file))
    key = sorted(state)[0]
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(file))
    with pytest.raises(ModelLoadError, match="sha256"):  # the checksum catches it first
        SubjectPipeline.from_pretrained(folder)
    manifest_file = folder / "smg_pipeline.json"  # a consistent edit of file and checksum: shapes still checked
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][file.relative_to(folder).as_posix()] = sha256_file(file)
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(WeightsMismatchError, match=key.replace(".", r"\.")):
        SubjectPipeline.from_pretrained(folder)


def test_load_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="smg_pipeline.json"):
        SubjectPipeline.from_pretrained(tmp_path)


def test_save_refuses_foreign_folder(tiny_pipe, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SMGError, match="not a saved pipeline"):
        tiny_pipe.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resave_replaces_atomically(tiny_pipe, tmp_path):
    folder = tiny_pipe.save_pretrained(tmp_path / "saved")
    tiny_pipe.save_pretrained(folder)
    assert (folder / "smg_pipeline.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]
