"""No command deletes what it did not create; a swap leaves the old or the new folder, never none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smg_sdk import cli
from smg_sdk.errors import SMGError
from smg_sdk.presets.tiny import TINY_DEFAULTS


ROOT = Path(__file__).resolve().parents[1]


def user_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.txt").write_text("four years of work")
    (folder / "photos").mkdir(exist_ok=True)
    (folder / "photos" / "cat.jpg").write_text("jpeg")
    return {"thesis.txt": "four years of work", "photos/cat.jpg": "jpeg"}


def unchanged(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / rel).read_text() == text for rel, text in files.items())


# ---------------------------------------------------------------------------------- smg demo


def demo(out: str, capsys) -> tuple[int, str]:
    code = cli.main(["demo", "--out", out, "--steps", "1", "--quiet"])
    return code, capsys.readouterr().err


def test_demo_refuses_a_folder_with_user_files(tmp_path, capsys):
    files = user_files(tmp_path / "mine")
    code, err = demo(str(tmp_path / "mine"), capsys)
    assert code == 2 and err.startswith("smg: error:") and len(err.strip().splitlines()) == 1
    assert unchanged(tmp_path / "mine", files)


def test_demo_refuses_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    code, err = demo(str(tmp_path / "notes.txt"), capsys)
    assert code == 2 and "file" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("where", [".", "~", ".."])
def test_demo_refuses_current_and_home_folders(tmp_path, capsys, monkeypatch, where):
    work = tmp_path / "work"
    files = user_files(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    (work / ".smg-output").write_text(json.dumps({"kind": "demo"}))  # even a marked folder is never replaced
    code, err = demo(where, capsys)
    assert code == 2 and "Refusing" in err
    assert unchanged(work, files)


def test_the_root_folder_is_never_an_output():
    from smg_sdk.atomic import check_output_folder

    with pytest.raises(SMGError, match="root"):
        check_output_folder("/", "demo")


def test_demo_replaces_its_own_earlier_gallery(tmp_path, capsys):
    assert demo(str(tmp_path / "gallery"), capsys)[0] == 0
    (tmp_path / "gallery" / "extra.png").write_bytes(b"")  # an earlier gallery, even with an extra image
    code, err = demo(str(tmp_path / "gallery"), capsys)
    assert code == 0, err
    assert not (tmp_path / "gallery" / "extra.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery"]


# ---------------------------------------------------------------------------------- save_pretrained, training


@pytest.fixture(scope="module")
def tiny_pipe():
    from smg_sdk import SubjectPipeline

    return SubjectPipeline.from_preset("tiny")


def test_save_pretrained_refuses_file_home_and_cwd(tiny_pipe, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(SMGError, match="file"):
        tiny_pipe.save_pretrained(tmp_path / "file")
    saved = tiny_pipe.save_pretrained(tmp_path / "saved")
    monkeypatch.chdir(saved)
    with pytest.raises(SMGError, match="current folder"):
        tiny_pipe.save_pretrained(".")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(saved))
    with pytest.raises(SMGError, match="home"):
        tiny_pipe.save_pretrained(saved)
    assert (tmp_path / "file").read_text() == "keep" and (saved / "smg_pipeline.json").is_file()


def test_training_refuses_an_output_dir_with_user_files(tiny_path, tmp_path):
    import torch

    from conftest import make_image
    from smg_sdk import Subject
    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
    from smg_sdk.pipeline import SubjectPipeline
    from smg_sdk.training import FlowMatchingTrainer, TrainerConfig, TrainingSample, adapter_parameters

    backend = FluxBackend.from_pretrained(tiny_path, max_sequence_length=32)
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=2)
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(adapter="subject")])
    files = user_files(tmp_path / "mine")
    data = [TrainingSample([Subject(make_image(0), "dog")], "a photo of <1>", make_image(1))]
    config = TrainerConfig(output_dir=str(tmp_path / "mine"), max_steps=1, height=32, width=32, progress=False)
    trainer = FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "subject"), data, config)
    with pytest.raises(SMGError, match="Refusing"):
        trainer.train()
    assert unchanged(tmp_path / "mine", files) and not list((tmp_path / "mine").glob("checkpoint-*"))


# ---------------------------------------------------------------------------------- the swap


KILLED_SAVE = textwrap.dedent("""
    import os, shutil, sys
    from pathlib import Path
    import smg_sdk.atomic as atomic

    target, new, mode = Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3]
    if mode == "rename":  # no renameat2: die between moving the old folder aside and moving the new one in
        atomic._USE_EXCHANGE = False
        real_replace = os.replace
        def replace(src, dst, *args, **kwargs):
            if Path(dst) == target:
                os._exit(9)
            return real_replace(src, dst, *args, **kwargs)
        os.replace = replace
    else:  # die right after the swap, before the old folder is removed
        real_rmtree = shutil.rmtree
        def rmtree(path, *args, **kwargs):
            if Path(path).name.startswith("." + target.name + "."):
                os._exit(9)
            return real_rmtree(path, *args, **kwargs)
        shutil.rmtree = rmtree
    with atomic.atomic_folder(target) as staging:  # what save_pretrained does, with a ready folder
        shutil.copytree(new, staging, dirs_exist_ok=True)
    os._exit(0)
""")


@pytest.mark.parametrize("mode", ["rename", "exchange"])
def test_a_save_killed_mid_swap_leaves_a_loadable_folder_and_no_debris(tiny_pipe, tmp_path, mode):
    from smg_sdk import SubjectPipeline

    target = tiny_pipe.save_pretrained(tmp_path / "saved")
    tiny_pipe.defaults["num_inference_steps"] = 3
    try:
        new = tiny_pipe.save_pretrained(tmp_path / "new")
    finally:
        tiny_pipe.defaults["num_inference_steps"] = TINY_DEFAULTS["num_inference_steps"]
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target), str(new), mode], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": path}, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    loaded = SubjectPipeline.from_pretrained(target)  # the old folder (rename) or the new one (exchange)
    assert loaded.defaults["num_inference_steps"] == (3 if mode == "exchange" else TINY_DEFAULTS["num_inference_steps"])
    tiny_pipe.save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "saved"], "stale staging folders were left behind"


def test_a_loaded_pipeline_resaved_into_its_own_folder_still_loads(tiny_pipe, tmp_path):
    from smg_sdk import SubjectPipeline

    folder = tiny_pipe.save_pretrained(tmp_path / "saved")
    SubjectPipeline.from_pretrained(folder).save_pretrained(folder)  # the base must not be saved by reference
    assert SubjectPipeline.from_pretrained(folder).defaults == tiny_pipe.defaults
