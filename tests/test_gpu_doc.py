"""docs/gpu.md runs: its Python blocks in order (tiny presets, on the CPU here), its `smg` commands, and its
fit table is exactly what the code block that makes it prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from smg_sdk.cli import main

DOC = (Path(__file__).resolve().parents[1] / "docs" / "gpu.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_python_blocks_run_and_the_table_is_current(capsys):
    namespace: dict = {}
    assert len(blocks("python")) == 4
    for code in blocks("python"):
        exec(compile(code, "docs/gpu.md", "exec"), namespace)
    documented = DOC.split("<!-- fit-table -->\n")[1].split("\n<!-- /fit-table -->")[0]
    assert namespace["table"] == documented
    assert "'encoders[1].mllm.model'" in capsys.readouterr().out


def test_smg_commands_run(capsys):
    commands = [line for code in blocks("bash") for line in code.splitlines() if line.startswith("smg ")]
    assert len(commands) == 2
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0, line
        assert "peak device:" in capsys.readouterr().out


README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
REAL_MODELS = README.split("## Real models\n")[1].split("\n## ")[0]


def test_readme_real_models_block_builds_every_preset_on_the_published_layouts(tmp_path):
    """The README's real-model block, with ``~/models`` the published layouts rebuilt at tiny width and
    ``device`` the CPU; each preset then generates one 64 px image under model offload."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    import real_layouts
    from smg_sdk import SubjectPipeline
    from smg_sdk.presets.tiny import tiny_subject_lora_path

    for build in (real_layouts.flux_dev, real_layouts.flux_redux_dev, real_layouts.qwen25_vl,
                  real_layouts.clip_vit_large):
        build(tmp_path)
    trained = tmp_path / "trained"
    squeeze = SubjectPipeline.from_preset("squeeze-tiny")
    (trained / "identity").mkdir(parents=True)
    squeeze.backend.save_adapter("squeeze-identity", trained / "identity").rename(trained / "identity.safetensors")
    save_file(squeeze.aggregators[0].state_dict(), str(trained / "dla.safetensors"))
    (trained / "reference.safetensors").write_bytes(Path(tiny_subject_lora_path()).read_bytes())

    [code] = re.findall(r"```python\n(.*?)```", REAL_MODELS, flags=re.S)
    for line in ('models = Path("~/models").expanduser()', 'device = "cuda"'):
        assert line in code
    code = code.replace('Path("~/models").expanduser()', f"Path({str(tmp_path)!r})")
    namespace: dict = {}
    exec(compile(code.replace('device = "cuda"', 'device = "cpu"'), "README.md", "exec"), namespace)
    presets = namespace["presets"]
    assert sorted(presets) == ["aligngen", "composed", "music", "omini", "squeeze"]
    for name, pipe in presets.items():
        assert pipe._offload_mode == "model", name
        if pipe.planner is not None:
            pipe.planner.config.max_attempts, pipe.planner.config.max_new_tokens = 1, 16  # keep the test short
        pipe.set_progress_bar_config(disable=True)
        out = pipe("a photo of <1>", [Image.new("RGB", (64, 64), "red")], seed=0, num_inference_steps=1, height=64,
                   width=64, output_type="np")
        assert np.isfinite(out.images).all(), name


def test_readme_memory_columns_are_the_memory_plan():
    from smg_sdk.backends.flux.memory import GIB, plan_memory

    rows = [line.split(" | ") for line in REAL_MODELS.splitlines() if line.startswith("| `")]
    assert [row[0].split("`")[1] for row in rows] == ["reference-lora", "squeeze", "aligngen", "music", "composed"]
    for row in rows:
        preset = row[0].split("`")[1]
        documented = [cell.strip(" |") for cell in row[-3:]]
        planned = [f"{plan_memory(preset, dtype='bf16', offload=o).device_peak / GIB:.1f} GiB"
                   for o in ("none", "model", "group")]
        assert documented == planned, preset
