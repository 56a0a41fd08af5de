"""Published model folders load as downloaded (rebuilt offline at tiny widths, see real_layouts.py).

Each test loads a real-layout folder through the SDK and compares the result with the same
weights loaded from the embedded tiny folders (or, for DINO, with transformers' own loading
of the ``.bin``): the layout changes nothing but where the files are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import real_layouts
from smg_sdk import ModelLoadError
from smg_sdk.presets import tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("layouts")


@pytest.fixture(scope="module")
def flux_dev(layouts) -> Path:
    return real_layouts.flux_dev(layouts)


def _image(seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def test_flux_dev_sharded_layout_loads_like_the_tiny_folder(flux_dev):
    from smg_sdk import FluxBackend

    folder = flux_dev
    assert not (folder / "tokenizer" / "tokenizer.json").exists()
    real = FluxBackend.from_pretrained(folder, max_sequence_length=16)
    ref = FluxBackend.from_pretrained(tiny.TINY_FLUX_PATH, max_sequence_length=16)
    for name in ("transformer", "text_encoder_2"):
        ours, theirs = getattr(real, name).state_dict(), getattr(ref, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    a, b = real.encode_prompt("a red dog on a beach"), ref.encode_prompt("a red dog on a beach")
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.pooled, b.pooled)


def test_flux_redux_dev_layout_loads_as_downloaded(layouts):
    from smg_plugins.aligngen.redux import ReduxEncoder

    folder = real_layouts.flux_redux_dev(layouts)
    real = ReduxEncoder(redux_path=str(folder))
    ref = ReduxEncoder(siglip_path=str(tiny.TINY_SIGLIP_PATH), redux_path=str(tiny.TINY_REDUX_PATH))
    images = [_image(0), _image(1)]
    assert torch.equal(real.image_tokens(images), ref.image_tokens(images))
    # Another SigLIP folder (with its own processor) may replace the repo's image_encoder/.
    assert torch.equal(ReduxEncoder(siglip_path=str(tiny.TINY_SIGLIP_PATH), redux_path=str(folder)).image_tokens(images),
                       ref.image_tokens(images))


def test_aligngen_preset_runs_on_flux_dev_and_redux_dev_as_downloaded(flux_dev, layouts):
    import numpy as np

    from smg_sdk import SubjectPipeline

    redux = real_layouts.flux_redux_dev(layouts / "preset")
    pipe = SubjectPipeline.from_preset("aligngen", path=str(flux_dev), redux_path=str(redux))
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a photo of <1> on a beach", [_image(6)], seed=0, num_inference_steps=1, height=64, width=64,
               output_type="np")
    assert np.isfinite(out.images).all()


def test_redux_sub_folders_alone_say_which_file_is_missing(layouts):
    from smg_plugins.aligngen.redux import ReduxEncoder

    folder = real_layouts.flux_redux_dev(layouts / "sub")
    with pytest.raises(ModelLoadError, match="preprocessor_config.json.*FLUX.1-Redux-dev"):
        ReduxEncoder(siglip_path=str(folder / "image_encoder"), redux_path=str(folder / "image_embedder"))
    with pytest.raises(ModelLoadError, match="siglip_path is needed"):
        ReduxEncoder(redux_path=str(folder / "image_embedder"))


def test_qwen25_vl_legacy_config_loads_like_the_tiny_folder(layouts):
    from smg_sdk import load_mllm

    folder = real_layouts.qwen25_vl(layouts)
    assert "text_config" not in (folder / "config.json").read_text()
    real = load_mllm(folder, reuse=False)
    ref = load_mllm(tiny.TINY_QWEN_VL_PATH, reuse=False)
    assert (real.num_layers, real.hidden_size, real.image_token_id) == (ref.num_layers, ref.hidden_size,
                                                                         ref.image_token_id)
    prompt, images = "the dog from Picture 1 on a beach", [_image(2)]
    a, b = real.build_inputs(prompt, images, image_size=64), ref.build_inputs(prompt, images, image_size=64)
    assert torch.equal(a.input_ids, b.input_ids)
    assert torch.allclose(real.hidden_states(a, layers=[3, -1]), ref.hidden_states(b, layers=[3, -1]), atol=1e-5)


def test_siglip_so400m_full_model_folder_serves_as_the_redux_vision_tower(layouts):
    from transformers import SiglipModel

    from smg_plugins.aligngen.redux import ReduxEncoder

    folder = real_layouts.siglip_so400m(layouts)
    encoder = ReduxEncoder(siglip_path=str(folder), redux_path=str(tiny.TINY_REDUX_PATH))
    full = SiglipModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
    pixels = encoder.processor.preprocess(images=[_image(3)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = encoder.redux(full.vision_model(pixel_values=pixels).last_hidden_state).image_embeds
    assert torch.allclose(encoder.image_tokens([_image(3)]), expected, atol=1e-6)


def test_clip_vit_large_layout_embeds_like_the_tiny_folder(layouts):
    from smg_sdk.eval.clip import ClipEmbedder

    folder = real_layouts.clip_vit_large(layouts)
    real, ref = ClipEmbedder(folder), ClipEmbedder(tiny.TINY_CLIP_PATH)
    assert torch.allclose(real.embed_images([_image(4)]), ref.embed_images([_image(4)]), atol=1e-6)
    assert torch.equal(real.embed_texts(["a red dog"]), ref.embed_texts(["a red dog"]))


def test_dino_bin_only_folder_names_the_command_then_loads_after_it(layouts, capsys):
    from transformers import ViTModel

    from smg_sdk.eval.metrics import SubjectMetrics

    folder = real_layouts.dino_vits16(layouts)
    with pytest.raises(ModelLoadError, match=r"smg convert-weights .*dino-vits16"):
        SubjectMetrics(dino_path=folder).dino_embeddings([_image(5)])
    from smg_sdk.cli import main

    assert main(["convert-weights", str(folder)]) == 0
    done = capsys.readouterr().out
    assert f"wrote {folder / 'model.safetensors'}" in done and "weights_only=True" in done
    assert (folder / "pytorch_model.bin").is_file()
    reference = ViTModel.from_pretrained(folder, local_files_only=True, use_safetensors=False,
                                         add_pooling_layer=False).eval()
    metrics = SubjectMetrics(dino_path=folder)
    processor = metrics._load_dino()[1]
    pixels = processor(images=[_image(5)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference(pixel_values=pixels).last_hidden_state[:, 0], dim=-1)
    assert torch.allclose(metrics.dino_embeddings([_image(5)]), expected, atol=1e-6)
    assert main(["convert-weights", str(folder)]) == 0
    assert "already exists" in capsys.readouterr().out


def test_convert_weights_maps_shard_names_and_refuses_bad_input(tmp_path, capsys):
    from safetensors.torch import load_file

    from smg_sdk.cli import main
    from smg_sdk.convert import convert_weights

    weights = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}
    torch.save({"a": weights["a"]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": weights["b"], "tied": weights["b"]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        '{"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}')
    done = convert_weights(tmp_path)
    assert sorted(c.target.name for c in done) == ["model-00001-of-00002.safetensors",
                                                   "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    assert torch.equal(load_file(str(tmp_path / "model-00002-of-00002.safetensors"))["tied"], weights["b"])
    assert "model-00001-of-00002.safetensors" in (tmp_path / "model.safetensors.index.json").read_text()
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "evil.bin").write_bytes(b"not a pickle of tensors")  # beside weights (training_args.bin, ...):
    assert main(["convert-weights", str(tmp_path)]) == 0  # reported and skipped, the rest handled
    assert "evil.bin: not a weights file" in capsys.readouterr().out and not (tmp_path / "evil.safetensors").exists()
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "pytorch_model.bin").write_bytes(b"not a pickle of tensors")
    assert main(["convert-weights", str(alone)]) == 2  # nothing convertible at all
    assert "weights_only=True" in capsys.readouterr().err and not list(alone.glob("*.safetensors"))
    assert main(["convert-weights", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
