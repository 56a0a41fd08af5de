"""A saved pipeline folder is untrusted input.

Each corruption below must end in a ModelLoadError (an SMGError), write nothing outside the
test's temporary folder, and run no canary code. The folder is the tiny preset saved once per
module and copied per test.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from security_helpers import (
    Canary,
    audited,
    build_saved_pipeline,
    edit_manifest,
    flip_bytes,
    read_manifest,
    rehash,
    writes_outside,
)
from smg_sdk import SubjectPipeline
from smg_sdk.errors import ModelLoadError, SMGError

BASE = "backend/base"
TEXT_WEIGHTS = f"{BASE}/text_encoder/model.safetensors"
TRANSFORMER_WEIGHTS = f"{BASE}/transformer/diffusion_pytorch_model.safetensors"
ADAPTER = "backend/adapters/subject/pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_saved_pipeline(tmp_path_factory.mktemp("template") / "saved")


@pytest.fixture()
def env(template, tmp_path, monkeypatch):
    """A fresh copy of the saved folder, an 'outside' folder, canaries, and cwd/HOME inside tmp_path."""
    folder = tmp_path / "pipe"
    shutil.copytree(template, folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = Canary(tmp_path / "canary")
    monkeypatch.syspath_prepend(str(canary.code))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(outside)
    yield {"folder": folder, "outside": outside, "canary": canary, "tmp": tmp_path}
    for name in ("smg_canary_mod", "canary_remote"):
        sys.modules.pop(name, None)


def assert_refused(env, **options) -> ModelLoadError:
    """Loading ``env['folder']`` raises ModelLoadError, writes only inside tmp_path, runs no canary."""
    with audited() as events:
        with pytest.raises(ModelLoadError) as info:
            SubjectPipeline.from_pretrained(env["folder"], **options)
    assert not writes_outside(events, env["tmp"]), writes_outside(events, env["tmp"])
    assert not env["canary"].ran, "canary code ran"
    assert "\n" not in str(info.value).strip()
    return info.value


# ---------------------------------------------------------------------------------- corruptions


def _set(path: list, value) -> Callable:
    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _manifest_edit(edit: Callable) -> Callable:
    return lambda env: edit_manifest(env["folder"], edit)


def _outside_file(env, name: str = "stolen.safetensors") -> Path:
    file = env["outside"] / name
    save_file({"w": torch.zeros(2)}, str(file))
    return file


def _weights_outside(env) -> None:
    file = _outside_file(env)

    def edit(m):
        m["encoders"][0]["weights"] = str(file)
        m["encoders"][0]["tensors"] = {"w": [[2], "torch.float32"]}
    edit_manifest(env["folder"], edit)


def _weights_dotdot(env) -> None:
    _outside_file(env)

    def edit(m):
        m["encoders"][0]["weights"] = "../outside/stolen.safetensors"
        m["encoders"][0]["tensors"] = {"w": [[2], "torch.float32"]}
    edit_manifest(env["folder"], edit)


def _adapter_outside(env) -> None:
    target = env["outside"] / "lora.safetensors"
    shutil.copy(env["folder"] / ADAPTER, target)
    edit_manifest(env["folder"], _set(["backend", "adapters", "subject", "file"], str(target)))


def _adapter_dotdot(env) -> None:
    shutil.copy(env["folder"] / ADAPTER, env["outside"] / "lora.safetensors")
    edit_manifest(env["folder"], _set(["backend", "adapters", "subject", "file"], "../../outside/lora.safetensors"))


def _backend_tensors_dotdot(env) -> None:
    _outside_file(env)
    edit_manifest(env["folder"], _set(["backend_tensors", "../../outside/stolen.safetensors"],
                                      {"w": [[2], "torch.float32"]}))


def _base_outside(env) -> None:
    shutil.copytree(env["folder"] / BASE, env["outside"] / "base")
    edit_manifest(env["folder"], _set(["backend", "base"], "../../outside/base"))


def _source_outside(env) -> None:
    shutil.copytree(env["folder"] / BASE, env["outside"] / "flux")

    def edit(m):
        del m["backend"]["base"]
        m["backend"]["source"] = str(env["outside"] / "flux")
    edit_manifest(env["folder"], edit)


def _symlink_out(env) -> None:
    file = env["folder"] / TEXT_WEIGHTS
    shutil.move(file, env["outside"] / "model.safetensors")
    os.symlink(env["outside"] / "model.safetensors", file)


def _pickle_adapter(env) -> None:
    state = load_file(str(env["folder"] / ADAPTER))
    (env["folder"] / ADAPTER).unlink()
    torch.save(state, env["folder"] / "backend/adapters/subject/pytorch_lora_weights.bin")
    edit_manifest(env["folder"], _set(["backend", "adapters", "subject", "file"],
                                      "adapters/subject/pytorch_lora_weights.bin"))
    rehash(env["folder"], ADAPTER, "backend/adapters/subject/pytorch_lora_weights.bin")
    edit_manifest(env["folder"], lambda m: m["backend_tensors"].pop("adapters/subject/pytorch_lora_weights.safetensors"))


def _flip_text_encoder_bits(env) -> None:
    flip_bytes(env["folder"] / TEXT_WEIGHTS)


def _flip_adapter_bits(env) -> None:
    flip_bytes(env["folder"] / ADAPTER)


def _delete_tokenizer(env) -> None:
    shutil.rmtree(env["folder"] / BASE / "tokenizer_2")


def _renamed_tensor(env) -> None:
    """A transformer tensor renamed, with the manifest's index and checksum updated to match."""
    file = env["folder"] / TRANSFORMER_WEIGHTS
    state = load_file(str(file))
    key = "norm_out.linear.weight"
    state[key + "_renamed"] = state.pop(key)
    save_file(state, str(file), metadata={"format": "pt"})

    def edit(m):
        index = m["backend_tensors"]["base/transformer/diffusion_pytorch_model.safetensors"]
        index[key + "_renamed"] = index.pop(key)
    edit_manifest(env["folder"], edit)
    rehash(env["folder"], TRANSFORMER_WEIGHTS)


def _truncated_weights(env) -> None:
    file = env["folder"] / TEXT_WEIGHTS
    file.write_bytes(file.read_bytes()[:1000])
    rehash(env["folder"], TEXT_WEIGHTS)


def _garbage_header(env) -> None:
    file = env["folder"] / ADAPTER
    file.write_bytes(b"\xff" * 8 + b"not a header" + file.read_bytes()[20:])
    rehash(env["folder"], ADAPTER)


def _model_index_imports(env) -> None:
    file = env["folder"] / BASE / "model_index.json"
    index = json.loads(file.read_text())
    index["vae"] = ["smg_canary_mod", "Judge"]
    file.write_text(json.dumps(index))
    rehash(env["folder"], f"{BASE}/model_index.json")


def _extra_file(env) -> None:
    (env["folder"] / BASE / "tokenizer_2" / "added_tokens.json").write_text('{"<evil>": 5}')


def _fifo(env) -> None:
    os.mkfifo(env["folder"] / "backend" / "pipe")


def _huge_manifest(env) -> None:
    manifest = read_manifest(env["folder"])
    manifest["defaults"]["negative_prompt"] = "x" * (17 * 2**20)
    (env["folder"] / "smg_pipeline.json").write_text(json.dumps(manifest))


def _deep_manifest(env) -> None:
    (env["folder"] / "smg_pipeline.json").write_text("[" * 200_000 + "]" * 200_000)


def _raw(text: str) -> Callable:
    return lambda env: (env["folder"] / "smg_pipeline.json").write_text(text)


CORRUPTIONS: dict[str, Callable] = {
    # manifest syntax and shape
    "manifest_truncated": lambda env: (env["folder"] / "smg_pipeline.json").write_text(
        (env["folder"] / "smg_pipeline.json").read_text()[:300]),
    "manifest_empty": _raw(""),
    "manifest_not_utf8": lambda env: (env["folder"] / "smg_pipeline.json").write_bytes(b"\xff\xfe{}"),
    "manifest_is_list": _raw("[]"),
    "manifest_nan": _manifest_edit(_set(["defaults", "guidance_scale"], float("nan"))),
    "manifest_huge": _huge_manifest,
    "manifest_deep": _deep_manifest,
    "manifest_deleted": lambda env: (env["folder"] / "smg_pipeline.json").unlink(),
    "missing_backend": _manifest_edit(lambda m: m.pop("backend")),
    "missing_encoders": _manifest_edit(lambda m: m.pop("encoders")),
    "unknown_top_key": _manifest_edit(_set(["run_me"], "now")),
    "format_string": _manifest_edit(_set(["format"], "2")),
    "backend_is_string": _manifest_edit(_set(["backend"], "flux")),
    "backend_type_unknown": _manifest_edit(_set(["backend", "type"], "nope")),
    "encoder_not_object": _manifest_edit(lambda m: m["encoders"].append("flux-text")),
    "encoder_config_list": _manifest_edit(_set(["encoders", 0, "config"], [1, 2])),
    "encoder_name_unknown": _manifest_edit(_set(["encoders", 0, "name"], "no-such-encoder")),
    "encoder_bad_option": _manifest_edit(_set(["encoders", 1, "config", "mode"], 5)),
    "encoder_bad_option_type": _manifest_edit(_set(["encoders", 0, "config"], {"t5": {"a": 1}, "bogus": 1})),
    "adapter_weight_string": _manifest_edit(_set(["backend", "adapters", "subject", "weight"], "1")),
    "tensor_shape_string": _manifest_edit(lambda m: m["backend_tensors"][
        "adapters/subject/pytorch_lora_weights.safetensors"].update(
        {k: ["4", "torch.float32"] for k in list(m["backend_tensors"][
            "adapters/subject/pytorch_lora_weights.safetensors"])[:1]})),
    "files_missing": _manifest_edit(lambda m: m.pop("files", None)),
    "defaults_height_63": _manifest_edit(_set(["defaults", "height"], 63)),
    "defaults_steps_negative": _manifest_edit(_set(["defaults", "num_inference_steps"], -4)),
    "defaults_unknown_key": _manifest_edit(_set(["defaults", "rm_rf"], True)),
    "defaults_string": _manifest_edit(_set(["defaults", "width"], "64")),
    "defaults_negative_references_string": _manifest_edit(_set(["defaults", "negative_references"], "no")),
    # remote code and imports named by the manifest
    "trust_remote_code_in_config": _manifest_edit(_set(["encoders", 0, "config", "trust_remote_code"], True)),
    # paths leading out of the folder
    "weights_absolute": _weights_outside,
    "weights_dotdot": _weights_dotdot,
    "adapter_file_absolute": _adapter_outside,
    "adapter_file_dotdot": _adapter_dotdot,
    "backend_tensors_dotdot": _backend_tensors_dotdot,
    "base_dotdot": _base_outside,
    "source_outside_not_allowed": _source_outside,
    "symlink_to_outside": _symlink_out,
    # pickle instead of safetensors
    "pickle_adapter": _pickle_adapter,
    # damaged or edited files
    "flipped_bits_text_encoder": _flip_text_encoder_bits,
    "flipped_bits_adapter": _flip_adapter_bits,
    "deleted_tokenizer_folder": _delete_tokenizer,
    "renamed_tensor_left_on_meta": _renamed_tensor,
    "truncated_weights_rehashed": _truncated_weights,
    "garbage_safetensors_header_rehashed": _garbage_header,
    "model_index_names_module": _model_index_imports,
    "unlisted_file": _extra_file,
    "fifo_in_folder": _fifo,
    "checksum_wrong": _manifest_edit(lambda m: m["files"].update({TEXT_WEIGHTS: "0" * 64})),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_folder_is_refused(env, name):
    CORRUPTIONS[name](env)
    assert_refused(env)


def test_error_names_the_file_and_what_to_do(env):
    _flip_text_encoder_bits(env)
    error = assert_refused(env)
    assert "text_encoder/model.safetensors" in str(error) and "re-save" in str(error)


def test_untouched_folder_loads_and_generates_the_same(env, template):
    pipe = SubjectPipeline.from_pretrained(env["folder"])
    again = SubjectPipeline.from_pretrained(template)
    kwargs = dict(seed=0, num_inference_steps=1, height=32, width=32, output_type="pt")
    assert torch.equal(pipe("a photo of a dog", **kwargs).images, again("a photo of a dog", **kwargs).images)


# ---------------------------------------------------------------------------------- remote code, imports


def _add_squeeze_encoder(env, **config) -> None:
    edit_manifest(env["folder"], lambda m: m["encoders"].append({"name": "squeeze-mllm", "config": config}))


def test_manifest_cannot_turn_on_remote_code(env):
    model = env["canary"].make_remote_model()
    _add_squeeze_encoder(env, model=str(model), trust_remote_code=True)
    error = assert_refused(env, allow_external=[model])
    assert "trust_remote_code" in str(error)


def test_music_planner_cannot_turn_on_remote_code(env):
    model = env["canary"].make_remote_model()
    edit_manifest(env["folder"], lambda m: m.update(
        planner={"name": "music", "config": {"model_path": str(model), "trust_remote_code": True}}))
    assert_refused(env, allow_external=[model])


def test_external_model_without_remote_code_runs_no_code(env):
    """With the caller's consent to the location, the model loads as data: its auto_map is ignored."""
    model = env["canary"].make_remote_model()
    _add_squeeze_encoder(env, model=str(model))
    assert_refused(env)  # outside the folder without consent
    with audited() as events:
        pipe = SubjectPipeline.from_pretrained(env["folder"], allow_external=[model])
        try:
            pipe.encoders[-1].mllm
        except ModelLoadError:
            pass  # refusing the folder is fine too; running its code is not
    assert not env["canary"].ran
    assert not writes_outside(events, env["tmp"])


def test_caller_opts_in_to_remote_code(env):
    _add_squeeze_encoder(env, model="tiny")
    assert SubjectPipeline.from_pretrained(env["folder"]).encoders[-1].trust_remote_code is False
    pipe = SubjectPipeline.from_pretrained(env["folder"], trust_remote_code=True)
    assert pipe.encoders[-1].trust_remote_code is True
    assert pipe.encoders[0].smg_config == {}  # only components that take the option get it
    resaved = pipe.save_pretrained(env["tmp"] / "resaved")
    assert "trust_remote_code" not in (resaved / "smg_pipeline.json").read_text()


@pytest.mark.parametrize("judge", ["smg_canary_mod:build", "sys:exit", "os:getcwd"])
def test_judge_is_never_imported_from_a_manifest(env, judge):
    edit_manifest(env["folder"], lambda m: m.update(verifier={"name": "scene-judge", "config": {"judge": judge}}))
    error = assert_refused(env)
    assert "registered" in str(error)


def test_cli_reports_an_import_path_judge_instead_of_exiting(env, capsys):
    from smg_sdk import cli

    edit_manifest(env["folder"], lambda m: m.update(verifier={"name": "scene-judge", "config": {"judge": "sys:exit"}}))
    code = cli.main(["generate", "--pipeline", str(env["folder"]), "--prompt", "a dog", "--out",
                     str(env["tmp"] / "o.png"), "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("smg: error:") and "judge" in err
    assert not (env["tmp"] / "o.png").exists()


def test_registered_judge_by_name_saves_and_loads(env):
    from smg_sdk.plugins import get_registry

    class FixedJudge:
        def __init__(self, value: float = 1.0):
            self.value = value

        def judge(self, images, request, plans):
            return [{"fixed": self.value} for _ in images]

    registry = get_registry()
    if ("judge", "test-fixed-judge") not in registry:
        registry.add_judge("test-fixed-judge", FixedJudge)
    edit_manifest(env["folder"], lambda m: m.update(verifier={
        "name": "scene-judge", "config": {"judge": "test-fixed-judge", "judge_options": {"value": 2.0}}}))
    pipe = SubjectPipeline.from_pretrained(env["folder"])
    assert pipe.verifier.judge.value == 2.0
    assert pipe.verifier.score([None], None) == [2.0]


# ---------------------------------------------------------------------------------- external sources


def test_external_base_model_loads_only_with_consent(env):
    _source_outside(env)
    error = assert_refused(env)
    assert "allow_external" in str(error)
    pipe = SubjectPipeline.from_pretrained(env["folder"], allow_external=[env["outside"] / "flux"])
    assert pipe.backend.source == str((env["outside"] / "flux").resolve())


# ---------------------------------------------------------------------------------- pickles elsewhere


def test_stream_adapter_from_pickle_file_is_refused(backend, tmp_path):
    from safetensors.torch import load_file as read

    torch.manual_seed(0)
    backend.add_stream_adapter("a", rank=2)
    file = backend.save_adapter("a", tmp_path / "lora")
    pickle = tmp_path / "lora.bin"
    torch.save(read(str(file)), pickle)
    with pytest.raises(ModelLoadError, match="safetensors"):
        backend.load_stream_adapter("b", str(pickle))
    with pytest.raises(ModelLoadError, match="safetensors"):
        backend.load_lora_weights(str(pickle), adapter_name="c")
    assert "b" not in backend.stream_adapters and "c" not in backend.adapter_weights


def test_pickle_format_mllm_folder_is_refused(tmp_path):
    from smg_sdk.mllm import load_mllm
    from smg_sdk.presets.tiny import tiny_qwen_vl_path

    folder = tmp_path / "qwen_pickle"
    shutil.copytree(tiny_qwen_vl_path(), folder)
    for file in folder.glob("*.safetensors"):
        torch.save(load_file(str(file)), folder / "pytorch_model.bin")
        file.unlink()
    with pytest.raises(ModelLoadError):
        load_mllm(folder, reuse=False)


def test_every_loading_error_is_an_smg_error():
    assert issubclass(ModelLoadError, SMGError)
