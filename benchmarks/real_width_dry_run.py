"""Real-width dry run: the published models at their real widths, shallow, loaded through the presets.

    taskset -c 1 python benchmarks/real_width_dry_run.py [--dtype bf16] [--keep DIR]

Writes, in a temporary folder laid out as the published repos, random weights for
FLUX.1-dev (widths 3072/4096 as published; one double and one single block; T5-XXL with one
layer; CLIP-L text and the VAE whole), FLUX.1-Redux-dev (SigLIP so400m vision tower and the
Redux embedder, whole), Qwen2.5-VL-7B (hidden 3584, two decoder layers and two vision layers;
vocabulary and widths as published), CLIP ViT-L/14 (whole) and DINOv2-base (transformers'
``Dinov2Config()`` defaults, which are facebook/dinov2-base's). Configs come from
``smg_sdk/presets/published/``; tokenizers and processors are the embedded tiny ones with the
published image sizes. Then it loads each component through the SDK and prints its load time
and the process's peak RSS, and runs one 256 px, 1-step generation per mode (concat, cached,
and each real-model preset). Too heavy for CI (several GB of RAM); a script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from smg_sdk.presets import tiny

PUBLISHED = Path(__file__).resolve().parents[1] / "smg_sdk" / "presets" / "published"


def published(name: str) -> dict[str, Any]:
    return json.loads((PUBLISHED / name / "config.json").read_text())


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def save(model: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    model.to(dtype).save_pretrained(folder, max_shard_size="2GB")


def flux_dev(root: Path, dtype: torch.dtype) -> Path:
    """FLUX.1-dev's folder: real widths, one double and one single block, T5-XXL with one layer."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    out = root / "FLUX.1-dev"
    out.mkdir()
    shutil.copy(PUBLISHED / "flux" / "model_index.json", out / "model_index.json")
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        shutil.copytree(tiny.TINY_FLUX_PATH / name, out / name)
    config = {k: v for k, v in published("flux/transformer").items() if not k.startswith("_")}
    save(FluxTransformer2DModel(**{**config, "num_layers": 1, "num_single_layers": 1}), out / "transformer", dtype)
    vae = {k: v for k, v in published("flux/vae").items() if not k.startswith("_")}
    save(AutoencoderKL(**vae), out / "vae", dtype)
    save(CLIPTextModel(CLIPTextConfig(**published("flux/text_encoder"))), out / "text_encoder", dtype)
    save(T5EncoderModel(T5Config(**{**published("flux/text_encoder_2"), "num_layers": 1})), out / "text_encoder_2",
         dtype)
    return out


def flux_redux_dev(root: Path, dtype: torch.dtype) -> Path:
    """FLUX.1-Redux-dev's folder: SigLIP so400m (384 px) vision tower, Redux embedder, feature_extractor/."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    out = root / "FLUX.1-Redux-dev"
    vision = SiglipVisionConfig(**published("siglip"))
    save(SiglipVisionModel(vision), out / "image_encoder", dtype)
    SiglipImageProcessor(size={"height": vision.image_size, "width": vision.image_size}).save_pretrained(
        out / "feature_extractor")
    redux = {k: v for k, v in published("redux").items() if not k.startswith("_")}
    save(ReduxImageEncoder(**redux), out / "image_embedder", dtype)
    write_json(out / "model_index.json", {
        "_class_name": "FluxPriorReduxPipeline", "_diffusers_version": "0.32.0.dev0",
        "feature_extractor": ["transformers", "SiglipImageProcessor"],
        "image_embedder": ["flux", "ReduxImageEncoder"], "image_encoder": ["transformers", "SiglipVisionModel"],
        "text_encoder": [None, None], "text_encoder_2": [None, None], "tokenizer": [None, None],
        "tokenizer_2": [None, None]})
    return out


def qwen25_vl(root: Path, dtype: torch.dtype) -> Path:
    """Qwen2.5-VL-7B's widths and vocabulary, two decoder and two vision layers; the tiny tokenizer's token ids."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    out = root / "Qwen2.5-VL-7B-Instruct"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(tiny.TINY_QWEN_VL_PATH / name, out / name)
    processor = json.loads((tiny.TINY_QWEN_VL_PATH / "processor_config.json").read_text())
    processor["image_processor"]["patch_size"] = 14
    write_json(out / "processor_config.json", processor)
    small = json.loads((tiny.TINY_QWEN_VL_PATH / "config.json").read_text())
    ids = {k: v for k, v in small.items() if k.endswith("token_id")}
    text = small.get("text_config", {})
    ids.update({k: v for k, v in text.items() if k.endswith("token_id")})
    config = {**published("qwen2_5_vl"), **ids, "num_hidden_layers": 2, "max_window_layers": 2}
    config["vision_config"] = {**config["vision_config"], "depth": 2, "fullatt_block_indexes": [1]}
    write_json(out / "config.json", config)
    model = Qwen2_5_VLForConditionalGeneration(AutoConfig.from_pretrained(out))
    save(model, out, dtype)
    return out


def clip_vit_large(root: Path, dtype: torch.dtype) -> Path:
    """openai/clip-vit-large-patch14: the whole CLIPModel at 224 px; the tiny tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    out = root / "clip-vit-large-patch14"
    save(CLIPModel(CLIPConfig(**published("clip"))), out, dtype)
    tokenizer = CLIPTokenizerFast.from_pretrained(tiny.TINY_CLIP_PATH)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(out)
    return out


def dinov2_base(root: Path, dtype: torch.dtype) -> Path:
    """facebook/dinov2-base: transformers' Dinov2Config() defaults, BitImageProcessor at 224 px."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    out = root / "dinov2-base"
    save(Dinov2Model(Dinov2Config()), out, dtype)
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(out)
    return out


def _status_gib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmHWM``: peak RSS, ``VmRSS``: current) in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) so the next step's peak is its own (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def measured(label: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; print its wall time, the RSS after it and the peak RSS during it, or its error.

    Returns ``fn``'s result, or None if it raised. Weights are memory-mapped safetensors, so
    the peak counts the pages a step really touched.
    """
    gc.collect()
    reset_peak_rss()
    start = time.perf_counter()
    try:
        value = fn()
        status = "ok"
    except Exception as exc:  # a dry run reports every failure and goes on
        value, status = None, f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        traceback.print_exc(limit=3)
    print(f"{label:<38} {time.perf_counter() - start:7.1f} s   peak rss {_status_gib('VmHWM'):5.2f} GiB   "
          f"after {_status_gib('VmRSS'):5.2f} GiB   {status}", flush=True)
    return value


def load_components(folders: dict[str, Path], dtype: str) -> None:
    """Each component alone, through the SDK's loaders, with one forward pass each."""
    from PIL import Image

    from smg_sdk import ClipEmbedder, FluxBackend, get_registry, load_mllm, parse_dtype
    from smg_sdk.eval.metrics import SubjectMetrics

    image = Image.new("RGB", (256, 256), (200, 60, 40))
    torch_dtype = parse_dtype(dtype)
    name = str(torch_dtype).removeprefix("torch.")

    def mllm() -> None:
        model = load_mllm(folders["qwen"], dtype=torch_dtype, reuse=False)
        inputs = model.build_inputs("the dog from Picture 1 on a beach", [image], image_size=224)
        assert model.hidden_states(inputs, layers=[1, -1]).shape[-1] == 3584

    steps: dict[str, Callable[[], Any]] = {
        "load FLUX.1-dev (FluxBackend)": lambda: FluxBackend.from_pretrained(folders["flux"], dtype=torch_dtype),
        "load+run Qwen2.5-VL-7B (load_mllm)": mllm,
        "load+run Redux + SigLIP so400m": lambda: get_registry().build(
            "encoder", "redux", redux_path=str(folders["redux"]), torch_dtype=name).image_tokens([image]),
        "load+run CLIP-L (ClipEmbedder)": lambda: ClipEmbedder(folders["clip"], torch_dtype=name).embed_images([image]),
        "load+run DINOv2 (SubjectMetrics)": lambda: SubjectMetrics(folders["clip"], folders["dino"]).dino_embeddings(
            [image]),
    }
    for label, step in steps.items():
        measured(label, step)
        gc.collect()


def run_modes(folders: dict[str, Path], dtype: str) -> None:
    """One 256 px, 1-step generation per reference mode and per real-model preset."""
    from PIL import Image

    from smg_sdk import SubjectPipeline

    f = {k: str(v) for k, v in folders.items()}
    quick = {"max_attempts": 1, "max_new_tokens": 16}
    modes: dict[str, Callable[[], SubjectPipeline]] = {
        "concat (reference-lora)": lambda: SubjectPipeline.from_preset("reference-lora", path=f["flux"], dtype=dtype),
        "cached (reference-lora)": lambda: SubjectPipeline.from_preset("reference-lora", path=f["flux"], dtype=dtype,
                                                                       reference_mode="cached"),
        "squeeze": lambda: SubjectPipeline.from_preset("squeeze", path=f["flux"], mllm_path=f["qwen"], dtype=dtype,
                                                       image_size=224),
        "aligngen": lambda: SubjectPipeline.from_preset("aligngen", path=f["flux"], redux_path=f["redux"], dtype=dtype),
        "music": lambda: SubjectPipeline.from_preset("music", path=f["flux"], planner_path=f["qwen"],
                                                     clip_path=f["clip"], dtype=dtype, image_size=224, **quick),
        "composed": lambda: SubjectPipeline.from_preset("composed", path=f["flux"], redux_path=f["redux"],
                                                        mllm_path=f["qwen"], clip_path=f["clip"], dtype=dtype,
                                                        image_size=224, planner_settings=quick),
    }
    reference = Image.new("RGB", (256, 256), (200, 60, 40))

    def generate(build: Callable[[], SubjectPipeline]) -> None:
        pipe = build()
        pipe.set_progress_bar_config(disable=True)
        out = pipe("a photo of <1> on a beach", [reference], seed=0, num_inference_steps=1, height=256, width=256)
        assert out.images[0].size == (256, 256)

    for label, build in modes.items():
        measured(f"build+generate {label}", lambda: generate(build))
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--keep", default=None, help="write the folders here and keep them (default: a temp folder)")
    args = parser.parse_args()
    from smg_sdk import parse_dtype

    dtype = parse_dtype(args.dtype)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="smg-real-width-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"torch threads {torch.get_num_threads()}, dtype {args.dtype}, folders in {root}", flush=True)
    try:
        builders = {"flux": flux_dev, "redux": flux_redux_dev, "qwen": qwen25_vl, "clip": clip_vit_large,
                    "dino": dinov2_base}
        folders = {}
        for key, builder in builders.items():
            with torch.random.fork_rng():
                torch.manual_seed(0)
                folders[key] = measured(f"write random {builder.__name__}", lambda: builder(root, dtype))
            gc.collect()
            if folders[key] is None:
                return
        sizes = {k: sum(p.stat().st_size for p in v.rglob("*") if p.is_file()) / 1024**3 for k, v in folders.items()}
        print("folder sizes: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in sizes.items()), flush=True)
        load_components(folders, args.dtype)
        run_modes(folders, args.dtype)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)  # the temp folder this run made


if __name__ == "__main__":
    main()
