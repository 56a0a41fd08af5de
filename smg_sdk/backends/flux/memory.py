"""``smg plan-memory``: the peak memory of a preset per device, from model configs alone.

Parameters are counted exactly, without weights: each model is built from its
``config.json`` on the meta device (``with torch.device("meta")``: stock diffusers /
transformers classes, nothing allocated, tied weights counted once). Weights bytes follow
the dtype; with ``quant`` the ``nn.Linear`` weights of the big models (transformer, T5, MLLM)
take the quantized size (``nf4``: 4 bits + one fp32 absmax per 64 weights, bitsandbytes'
defaults without double quantization; ``int8``: 1 byte + one fp32 scale per output row).

Activations are estimates for one request (``docs/gpu.md`` gives the formulas): the
transformer's working set ``12 x B x N x D`` values for ``N`` joint tokens (text + image +
concat references) of width ``D``, plus the joint attention mask ``B x N x N`` (the
memory-efficient SDPA kernel takes it without materialising scores), plus the cached
references' keys/values ``2 x blocks x B x N_ref x D`` in cached mode; the VAE's
``6 x B x H x W x C0`` at full resolution; encoders ``12 x B x T x width`` (an MLLM also
keeps its ``layers + 1`` hidden states). A fixed 0.5 GiB covers the CUDA context.

Peaks by offload mode: none, all weights + the largest phase; ``model`` (one model at a
time, :meth:`SubjectPipeline.enable_model_cpu_offload`), the largest model + its phase;
``group`` (:meth:`SubjectPipeline.enable_group_offload`, one block per group, no streams),
the largest transformer block + the transformer's loose layers, or an encoder's largest
layer, + the phase. Offloaded weights are counted in CPU RAM.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelLoadError, RequestError

GIB = 1024**3
CUDA_CONTEXT = 0.5 * GIB
"""Fixed allowance for the CUDA context and allocator slack (bytes)."""
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
QUANT_MODES = ("none", "nf4", "int8")
OFFLOAD_MODES = ("none", "model", "group")
QUANTIZED = ("transformer", "text_encoder_2", "mllm")
"""The models a quantization config targets (diffusers' usual ``components_to_quantize`` plus the MLLM)."""

PUBLISHED_ROOT = Path(__file__).resolve().parents[2] / "presets" / "published"
"""Published configs (config.json only, no weights): FLUX.1-dev, CLIP-L, T5-XXL, Qwen2.5-VL-7B, SigLIP so400m, Redux."""

MODEL_FOLDERS = {
    "transformer": "flux/transformer", "vae": "flux/vae", "text_encoder": "flux/text_encoder",
    "text_encoder_2": "flux/text_encoder_2", "mllm": "qwen2_5_vl", "siglip": "siglip", "redux": "redux",
    "clip": "clip",
}
"""Where each model's config.json sits under a models root (the tiny root and the published root share it)."""

FLUX_MODELS = ("transformer", "vae", "text_encoder", "text_encoder_2")
PRESET_MODELS = {
    "reference-lora": FLUX_MODELS,
    "omini": FLUX_MODELS,
    "tiny": FLUX_MODELS,
    "squeeze": (*FLUX_MODELS, "mllm"),
    "aligngen": (*FLUX_MODELS, "siglip", "redux"),
    "music": (*FLUX_MODELS, "mllm", "clip"),
    "composed": (*FLUX_MODELS, "mllm", "siglip", "redux", "clip"),
}
"""The models each preset loads (``music``: the planner's MLLM and the CLIP verifier)."""


@dataclass
class Request:
    """The request the activations are estimated for: image size (px), references, images per call."""

    height: int = 1024
    width: int = 1024
    references: int = 1
    batch: int = 1
    reference_mode: str = "concat"
    max_sequence_length: int = 512
    mllm_image_size: int = 448


@dataclass
class ModelSize:
    """One model's parameters (count), weights bytes, and what offloading keeps on the device."""

    name: str
    params: int
    weight_bytes: float
    largest_group_bytes: float
    activation_bytes: float


@dataclass
class MemoryPlan:
    """Estimated peak bytes per device for one preset and settings, with the per-model rows."""

    preset: str
    root: str
    dtype: str
    offload: str
    quant: str
    request: Request
    models: list[ModelSize] = field(default_factory=list)
    device_peak: float = 0.0
    cpu_peak: float = 0.0
    peak_phase: str = ""


def preset_root(preset: str, models: str | Path | None = None) -> tuple[tuple[str, ...], Path]:
    """The models ``preset`` loads and the root their configs are read from.

    ``NAME-tiny`` (and ``tiny``) read the shipped tiny folders; other names the published
    configs shipped beside them, unless ``models`` names a root laid out as
    :data:`MODEL_FOLDERS`. Raises :class:`RequestError` for an unknown preset and
    :class:`ModelLoadError` for a missing config.json.
    """
    from ...presets.tiny import TINY_ROOT

    base = preset.removesuffix("-tiny")
    if base not in PRESET_MODELS:
        raise RequestError(f"--preset {preset!r} is not one plan-memory knows; choose one of "
                           f"{sorted(PRESET_MODELS)} (add -tiny for the tiny folders).")
    tiny = preset == "tiny" or preset.endswith("-tiny")
    root = Path(models).expanduser() if models is not None else (TINY_ROOT if tiny else PUBLISHED_ROOT)
    names = PRESET_MODELS[base]
    missing = [str(root / MODEL_FOLDERS[n] / "config.json") for n in names
               if not (root / MODEL_FOLDERS[n] / "config.json").is_file()]
    if missing:
        raise ModelLoadError(f"--models {str(root)!r} lacks {missing}; it must hold each model's config.json "
                             f"laid out as {MODEL_FOLDERS}.")
    return names, root


@functools.lru_cache(maxsize=32)
def build_on_meta(folder: Path) -> torch.nn.Module:
    """The model a config.json describes, built on the meta device (stock diffusers/transformers classes only).

    Cached per folder (a meta model holds no memory; the configs are read once per process).
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{folder}/config.json cannot be read as JSON ({exc}); put the model's published "
                             "config.json there.") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{folder}/config.json holds a {type(config).__name__}, not a model config object; "
                             "put the model's published config.json there.")
    try:
        return _meta_model(folder, config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{folder}/config.json does not describe a buildable model ({type(exc).__name__}: "
                             f"{exc}); put the model's published config.json there.") from None


def _meta_model(folder: Path, config: dict) -> torch.nn.Module:
    with torch.device("meta"):
        if "_class_name" in config:
            import diffusers

            cls = getattr(diffusers, str(config["_class_name"]), None)
            if not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
                raise ModelLoadError(f"{folder}/config.json names {config['_class_name']!r}, not a diffusers model.")
            return cls.from_config(cls.load_config(folder))
        import transformers

        arch = (config.get("architectures") or [None])[0]
        cls = getattr(transformers, str(arch), None) if arch else None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise ModelLoadError(f"{folder}/config.json names architecture {arch!r}, not a transformers model.")
        return cls._from_config(transformers.AutoConfig.from_pretrained(folder, local_files_only=True))


def linear_bytes(layer: torch.nn.Linear, quant: str, dtype_bytes: int) -> float:
    """Bytes of one Linear weight: dtype, or nf4 (4 bit + fp32 absmax per 64) or int8 (+ fp32 scale per row)."""
    n = layer.weight.numel()
    if quant == "nf4":
        return n / 2 + -(-n // 64) * 4
    if quant == "int8":
        return n + layer.out_features * 4
    return n * dtype_bytes


def quantized_linears(module: torch.nn.Module, quant: str) -> dict[int, torch.nn.Linear]:
    """The Linear layers a quantization config converts, by weight id: all but a language model's output head.

    transformers keeps the output embeddings (``lm_head``) unquantized with bitsandbytes.
    """
    if quant == "none":
        return {}
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    return {id(m.weight): m for m in module.modules() if isinstance(m, torch.nn.Linear) and m is not head}


def weight_bytes(module: torch.nn.Module, dtype_bytes: int, quant: str = "none") -> float:
    """Bytes of ``module``'s parameters (each once) and buffers; Linear weights quantized when ``quant``."""
    linears = quantized_linears(module, quant)
    total = 0.0
    for p in module.parameters():
        layer = linears.get(id(p))
        total += linear_bytes(layer, quant, dtype_bytes) if layer is not None else p.numel() * dtype_bytes
    return total + sum(b.numel() * b.element_size() for b in module.buffers())


def largest_group_bytes(module: torch.nn.Module, name: str, dtype_bytes: int, quant: str) -> float:
    """What group offloading keeps on the device at once: see :func:`enable_group_offload` in placement.

    The transformer (block level, one block per group): its largest block plus the layers
    outside its block lists (onloaded for the whole forward). Other models (leaf level): their
    largest single layer.
    """
    if name == "transformer":
        blocks = [b for child in module.children() if isinstance(child, torch.nn.ModuleList) for b in child]
        in_blocks = sum(weight_bytes(b, dtype_bytes, quant) for b in blocks)
        return weight_bytes(module, dtype_bytes, quant) - in_blocks + max(weight_bytes(b, dtype_bytes, quant)
                                                                          for b in blocks)
    linears = quantized_linears(module, quant)

    def own(m: torch.nn.Module) -> float:
        quantized = id(m.weight) in linears if isinstance(m, torch.nn.Linear) else False
        rest = sum(p.numel() for p in m.parameters(recurse=False) if not (quantized and p is m.weight))
        return rest * dtype_bytes + (linear_bytes(m, quant, dtype_bytes) if quantized else 0)

    return max(own(m) for m in module.modules())


def lora_bytes(transformer: torch.nn.Module, rank: int, dtype_bytes: int) -> float:
    """A stream LoRA of ``rank`` on FLUX's default target layers: ``rank x (in + out)`` per layer."""
    from .lora import DEFAULT_TARGET_MODULES

    return sum(rank * (m.in_features + m.out_features) * dtype_bytes for n, m in transformer.named_modules()
               if isinstance(m, torch.nn.Linear) and any(n.endswith(t) for t in DEFAULT_TARGET_MODULES))


def _width(config: Any) -> int:
    """The hidden width of a transformers config (a composite config's text width)."""
    for source in (config, getattr(config, "text_config", None)):
        for key in ("hidden_size", "d_model"):
            value = getattr(source, key, None)
            if isinstance(value, int):
                return value
    raise ModelLoadError(f"Cannot read a hidden width from {type(config).__name__}.")


def transformer_activation(module: torch.nn.Module, request: Request, text_tokens: int, s: int) -> float:
    """The transformer's peak activations (bytes): working set, joint mask, cached reference K/V."""
    config = module.config
    width = int(config.num_attention_heads) * int(config.attention_head_dim)
    image = (request.height // 16) * (request.width // 16)
    references = request.references * image
    cached = request.reference_mode == "cached"
    joint = text_tokens + image + (0 if cached else references)
    b = request.batch
    total = 12 * b * joint * width * s
    if request.references:
        total += b * joint * (joint + (references if cached else 0)) * s
    if cached:
        total += 2 * (int(config.num_layers) + int(config.num_single_layers)) * b * references * width * s
    return float(total)


def model_activation(name: str, module: torch.nn.Module, request: Request, text_tokens: int, s: int) -> float:
    """Peak activations (bytes) of one model while it runs (estimates; see the module docstring)."""
    b, refs = request.batch, max(request.references, 1)
    if name == "transformer":
        return transformer_activation(module, request, text_tokens, s)
    config = module.config
    if name == "vae":
        return 6.0 * b * request.height * request.width * int(config.block_out_channels[0]) * s
    if name == "redux":
        return 4.0 * refs * 729 * 3 * int(config.txt_in_features) * s
    if name == "clip":
        vision = config.vision_config
        tokens = (int(vision.image_size) // int(vision.patch_size)) ** 2 + 1
        return 12.0 * b * tokens * int(vision.hidden_size) * s
    if name == "siglip":
        return 12.0 * refs * (int(config.image_size) // int(config.patch_size)) ** 2 * int(config.hidden_size) * s
    if name == "mllm":
        tokens = refs * (request.mllm_image_size // 28) ** 2 + 64
        layers = int(getattr(config, "num_hidden_layers", None) or config.text_config.num_hidden_layers)
        return float((12 + layers + 1) * tokens * _width(config) * s)
    tokens = 77 if name == "text_encoder" else request.max_sequence_length
    return 12.0 * tokens * _width(config) * s


def extra_text_tokens(names: tuple[str, ...], request: Request) -> int:
    """Text-side tokens beyond the prompt's: Redux's 729 per reference, the MLLM's image tokens + 64."""
    refs = request.references
    extra = 729 * refs if "redux" in names else 0
    if "mllm" in names:
        extra += refs * (request.mllm_image_size // 28) ** 2 + 64
    return extra


LORA_PRESETS = ("reference-lora", "omini", "tiny", "squeeze", "composed")
"""Presets whose reference stream carries a LoRA (counted at ``lora_rank`` with the transformer)."""


def plan_memory(preset: str, *, dtype: str = "bf16", offload: str = "none", quant: str = "none",
                models: str | Path | None = None, request: Request | None = None, lora_rank: int = 16) -> MemoryPlan:
    """Estimate the peak bytes per device of ``preset`` from its configs (see the module docstring).

    Raises :class:`RequestError` for an unknown ``dtype``/``offload``/``quant``/preset or a
    request size that is not a positive multiple of 16, :class:`ModelLoadError` for missing
    or foreign configs.
    """
    request = request or Request()
    _check_options(dtype, offload, quant, request)
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 0:
        raise RequestError(f"--lora-rank must be a whole number >= 0, got {lora_rank!r}.")
    names, root = preset_root(preset, models)
    s = DTYPE_BYTES[dtype]
    text_tokens = request.max_sequence_length + extra_text_tokens(names, request)
    plan = MemoryPlan(preset, str(root), dtype, offload, quant, request)
    for name in names:
        module = build_on_meta(root / MODEL_FOLDERS[name])
        q = quant if name in QUANTIZED else "none"
        weights = weight_bytes(module, s, q)
        activation = model_activation(name, module, request, text_tokens, s)
        if q != "none":  # bitsandbytes dequantizes one layer at a time into the compute dtype
            activation += max(m.weight.numel() for m in quantized_linears(module, q).values()) * s
        if name == "transformer" and preset.removesuffix("-tiny") in LORA_PRESETS:
            weights += lora_bytes(module, lora_rank, s)
        params = sum(p.numel() for p in module.parameters())
        plan.models.append(ModelSize(name, params, weights, largest_group_bytes(module, name, s, q), activation))
    _peaks(plan)
    return plan


def _check_options(dtype: str, offload: str, quant: str, request: Request) -> None:
    for label, value, allowed in (("dtype", dtype, tuple(DTYPE_BYTES)), ("offload", offload, OFFLOAD_MODES),
                                  ("quant", quant, QUANT_MODES)):
        if value not in allowed:
            raise RequestError(f"--{label} {value!r} is not one of {allowed}.")
    for label in ("height", "width"):
        value = getattr(request, label)
        if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value % 16:
            raise RequestError(f"--{label} must be a positive multiple of 16 (pixels), got {value!r}.")
    if request.references < 0 or request.batch < 1:
        raise RequestError(f"--references must be >= 0 and --batch >= 1, got {request.references}, {request.batch}.")
    if request.reference_mode not in ("concat", "cached"):
        raise RequestError(f"--reference-mode must be concat or cached, got {request.reference_mode!r}.")


def _peaks(plan: MemoryPlan) -> None:
    """Fill the device and CPU peaks of ``plan`` from its per-model rows."""
    total = sum(m.weight_bytes for m in plan.models)
    if plan.offload == "none":
        top = max(plan.models, key=lambda m: m.activation_bytes)
        plan.device_peak, plan.cpu_peak = total + top.activation_bytes, 0.0
    else:
        resident = (lambda m: m.weight_bytes) if plan.offload == "model" else (lambda m: m.largest_group_bytes)
        top = max(plan.models, key=lambda m: resident(m) + m.activation_bytes)
        plan.device_peak, plan.cpu_peak = resident(top) + top.activation_bytes, total
    plan.device_peak += CUDA_CONTEXT
    plan.peak_phase = top.name


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB" if value >= 0.01 * GIB else f"{value / 1024**2:.2f} MiB"


def format_plan(plan: MemoryPlan) -> str:
    """The plan as the lines ``smg plan-memory`` prints: settings, one row per model, the peaks."""
    r = plan.request
    lines = [
        f"preset {plan.preset}  (configs: {plan.root})",
        f"dtype {plan.dtype}  offload {plan.offload}  quant {plan.quant}  request {r.height}x{r.width}, "
        f"{r.references} reference(s) ({r.reference_mode}), batch {r.batch}",
        f"{'model':<16}{'params':>12}{'weights':>14}{'on device (offload)':>22}{'activations':>14}",
    ]
    for m in plan.models:
        offloaded = {"none": m.weight_bytes, "model": m.weight_bytes, "group": m.largest_group_bytes}[plan.offload]
        lines.append(f"{m.name:<16}{m.params / 1e9:>11.3f}B{_gib(m.weight_bytes):>14}{_gib(offloaded):>22}"
                     f"{_gib(m.activation_bytes):>14}")
    lines.append(f"peak device: {_gib(plan.device_peak)}  (while {plan.peak_phase} runs; includes "
                 f"{_gib(CUDA_CONTEXT)} CUDA context)")
    lines.append(f"peak cpu:    {_gib(plan.cpu_peak)}  (offloaded weights)")
    return "\n".join(lines)


CARDS_GB = (16, 24, 48, 80)
TABLE_SETTINGS = (("none", "none"), ("model", "none"), ("group", "none"), ("none", "nf4"), ("model", "nf4"),
                  ("group", "nf4"))
"""(offload, quant) rows of :func:`fit_table`, fastest first."""


def fit_table(presets: tuple[str, ...], *, dtype: str = "bf16", models: str | Path | None = None,
              request: Request | None = None, cards: tuple[int, ...] = CARDS_GB) -> str:
    """A markdown table: per preset and (offload, quant), the device and CPU peaks and which cards fit.

    A card of ``G`` GB fits when the device peak is at most ``G`` GiB (cards sold as 16 GB
    have 16 GiB).
    """
    head = ["preset", "offload", "quant", "device peak", "CPU RAM", *(f"{c} GB" for c in cards)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for preset in presets:
        for offload, quant in TABLE_SETTINGS:
            plan = plan_memory(preset, dtype=dtype, offload=offload, quant=quant, models=models, request=request)
            fits = ["yes" if plan.device_peak <= c * GIB else "no" for c in cards]
            cells = [preset, offload, quant, f"{plan.device_peak / GIB:.1f} GiB", f"{plan.cpu_peak / GIB:.1f} GiB",
                     *fits]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


__all__ = ["MemoryPlan", "ModelSize", "Request", "fit_table", "format_plan", "plan_memory", "preset_root"]
