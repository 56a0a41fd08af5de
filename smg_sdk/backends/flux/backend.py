"""The FLUX backend: diffusers' FLUX components plus condition streams.

It owns the transformer, VAE, CLIP + T5 text encoders and the flow-matching scheduler,
encodes prompts and reference images, runs the sampler (see :mod:`.sampler`) and
decodes. Streams reach the transformer only through :class:`StreamAttnProcessor` (installed
with ``set_attn_processor``) and peft adapters.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from .processor import install_stream_processors
from ...errors import BackendError, ModelLoadError, SMGError
from .latents import pack_latents, unpack_latents
from .lora import (
    DEFAULT_TARGET_MODULES,
    activate_adapters,
    adapter_metadata,
    adapter_names,
    adapter_tensors,
    delete_adapter,
    lora_layers,
    peft_loaded,
    set_text_encoder_adapters,
)
from ...sampling import SampleResult, SamplingCall, prepare_sampling
from .positions import text_ids
from .sampler import check_streams, predict_velocity, sample

FLUX_COMPONENTS = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer")

__all__ = ["FluxBackend", "ImageEncoding", "PromptEncoding"]


@dataclass
class PromptEncoding:
    """T5 token embeddings ``(1, L, D)``, CLIP pooled ``(1, P)``, and the T5 tokens they came from."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    input_ids: torch.Tensor
    offsets: list[tuple[int, int]] = field(default_factory=list)
    text: str = ""


@dataclass
class ImageEncoding:
    """Packed VAE latents of one image ``(1, rows * cols, C*4)`` and their token grid."""

    tokens: torch.Tensor
    grid: tuple[int, int]


class FluxBackend:
    """diffusers' FLUX stack, driven by condition streams.

    Build it with :meth:`from_pretrained` (a local diffusers-format folder, or a model id
    already in the Hugging Face cache: nothing is downloaded unless ``local_files_only=False``)
    or :meth:`from_pipeline` (an existing :class:`diffusers.FluxPipeline`; modules are shared,
    not copied).
    """

    def __init__(
        self,
        *,
        transformer,
        vae,
        text_encoder,
        tokenizer,
        text_encoder_2,
        tokenizer_2,
        scheduler,
        max_sequence_length: int = 512,
        source: str | None = None,
    ):
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2
        self.scheduler = scheduler
        self.max_sequence_length = int(max_sequence_length)
        self.source = source
        self.adapter_weights: dict[str, float] = {}
        """Adapters active on every token (user LoRAs), with their weights."""
        self.stream_adapters: set[str] = set()
        """Adapters that act only on the stream that names them."""
        self._diffusers_view = None
        self.lock = threading.RLock()
        """Held by a pipeline for a whole generation, encoding or training step: the tokenizers and
        the transformer's active adapters are shared state, so calls on one backend run one at a time."""
        install_stream_processors(self.transformer)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        local_files_only: bool = True,
        max_sequence_length: int = 512,
        quantization_config: Any = None,
    ) -> "FluxBackend":
        """Load a diffusers-format FLUX folder (safetensors weights only, stock diffusers/transformers classes).

        ``dtype`` (e.g. ``torch.bfloat16``; ``torch_dtype`` is its older name, deprecated by
        diffusers) and ``quantization_config`` (a ``diffusers.PipelineQuantizationConfig``:
        bitsandbytes 4/8-bit, torchao, GGUF, quanto) are handed to
        ``FluxPipeline.from_pretrained`` as they are. The quantization backends need their
        library installed and, for bitsandbytes, a CUDA GPU. Raises :class:`ModelLoadError` for
        a missing folder, unloadable weights, or a quantization backend that cannot run here.
        """
        from diffusers import FluxPipeline

        if dtype is not None and torch_dtype is not None:
            raise ModelLoadError("Pass dtype or torch_dtype (its older, deprecated name), not both.")
        local = Path(path).expanduser()
        looks_like_repo_id = not local.is_absolute() and str(path).count("/") == 1 and not str(path).startswith(".")
        if not local.exists() and not looks_like_repo_id:
            raise ModelLoadError(f"No FLUX model folder at {str(path)!r}; pass the path of a diffusers-format folder.")
        if local.exists():
            check_model_index(local)
        options: dict[str, Any] = {"dtype": dtype if dtype is not None else torch_dtype}
        if quantization_config is not None:
            options["quantization_config"] = quantization_config
        try:
            pipe = FluxPipeline.from_pretrained(str(local) if local.exists() else str(path), local_files_only=local_files_only, use_safetensors=True,
                                                **options)
        except ImportError as exc:
            if quantization_config is None:
                raise
            raise ModelLoadError(
                f"The quantization backend of quantization_config cannot run here: {exc}. bitsandbytes needs a CUDA "
                "GPU; torchao, GGUF and quanto need their package installed."
            ) from exc
        except (OSError, ValueError, EnvironmentError) as exc:
            raise ModelLoadError(f"Could not load FLUX from {str(path)!r}: {exc}") from exc
        from ...serialization import check_materialised

        check_materialised({name: getattr(pipe, name) for name in FLUX_COMPONENTS}, str(path))
        backend = cls.from_pipeline(pipe, max_sequence_length=max_sequence_length)
        backend.source = str(local.resolve()) if local.exists() else str(path)
        if device is not None:
            backend.to(device)
        return backend

    @classmethod
    def from_pipeline(cls, pipe, *, max_sequence_length: int = 512) -> "FluxBackend":
        """Wrap the modules of an existing FluxPipeline (shared, not copied)."""
        return cls(**{name: getattr(pipe, name) for name in FLUX_COMPONENTS}, max_sequence_length=max_sequence_length)

    def as_diffusers_pipeline(self):
        """A diffusers FluxPipeline sharing this backend's modules (for diffusers' own tools)."""
        if self._diffusers_view is None:
            from diffusers import FluxPipeline

            self._diffusers_view = FluxPipeline(**self.components)
            self._diffusers_view.set_progress_bar_config(disable=True)
        return self._diffusers_view

    @property
    def components(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FLUX_COMPONENTS}

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "FluxBackend":
        """Move every model to ``device`` and/or cast it to ``dtype`` (None leaves that as it is)."""
        from ...placement import module_to

        for module in self.modules().values():
            module_to(module, device, dtype)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """The device the transformer computes on: its offload hooks' once offloaded (not ``transformer.device``)."""
        from ...placement import execution_device

        return execution_device(self.transformer)

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downsampling x 2x2 packing)."""
        return self.vae_scale_factor * 2

    @property
    def text_width(self) -> int:
        return int(self.transformer.config.joint_attention_dim)

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.in_channels) // 4

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The packed token grid of an image of this size."""
        return height // self.size_multiple, width // self.size_multiple

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_prompt(self, prompt: str, max_sequence_length: int | None = None) -> PromptEncoding:
        """T5 + CLIP encoding of ``prompt``, identical to FluxPipeline.encode_prompt."""
        length = max_sequence_length or self.max_sequence_length
        pipe = self.as_diffusers_pipeline()
        embeds, pooled, _ = pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=self.device, num_images_per_prompt=1, max_sequence_length=length
        )
        tokens = self.tokenizer_2(
            prompt, padding="max_length", max_length=length, truncation=True, return_offsets_mapping=True
        )
        offsets = [tuple(o) for o in tokens.get("offset_mapping", [])]
        ids = torch.tensor(tokens["input_ids"])
        return PromptEncoding(embeds=embeds, pooled=pooled, input_ids=ids, offsets=offsets, text=prompt)

    @torch.no_grad()
    def encode_pooled(self, prompt: str) -> torch.Tensor:
        """CLIP's pooled embedding ``(1, P)`` alone (as FluxPipeline computes it), without running T5."""
        ids = self.tokenizer(
            [prompt], padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids
        pooled = self.text_encoder(ids.to(self.text_encoder.device), output_hidden_states=False).pooler_output
        return pooled.to(device=self.device, dtype=self.text_encoder.dtype)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image], height: int, width: int) -> list[ImageEncoding]:
        """VAE latents of each image resized to ``height x width``, packed like the target."""
        from diffusers.image_processor import VaeImageProcessor

        if height % self.size_multiple or width % self.size_multiple:
            raise BackendError(f"Reference size {height}x{width} must be a multiple of {self.size_multiple}.")
        processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor * 2)
        out = []
        for image in images:
            pixels = processor.preprocess(image, height=height, width=width).to(self.device, self.vae.dtype)
            latents = self.vae.encode(pixels).latent_dist.mode()
            latents = (latents - self.vae.config.shift_factor) * self.vae.config.scaling_factor
            out.append(ImageEncoding(pack_latents(latents.to(self.dtype)), self.token_grid(height, width)))
        return out

    @torch.no_grad()
    def encode_references(self, images: Sequence[Image.Image], height: int, width: int) -> list[ImageEncoding]:
        """Reference images inside a ``height x width`` box, each on its own grid, never stretched.

        The aspect policy is :func:`smg_sdk.images.fit_reference` (``"fit-pad"``): scale to fit,
        pad to the next multiple of :attr:`size_multiple`; square images in a square box encode
        exactly as :meth:`encode_images` would.
        """
        from ...images import fit_reference

        out = []
        for image in images:
            fitted = fit_reference(image, height, width, self.size_multiple)
            box = (height, width) if fitted is image else (fitted.height, fitted.width)
            out.extend(self.encode_images([fitted], *box))
        return out

    # ------------------------------------------------------------------ sampling
    def check_conditions(self, conditions) -> int:
        """The batch size of ``conditions``; raises BackendError for raw streams, a missing text
        stream or pooled embedding, disagreeing batch sizes, or widths this FLUX does not take."""
        return check_streams(self, conditions)

    def sample(self, call: SamplingCall) -> SampleResult:
        """Run the flow-matching sampler on a core sampling call (see :func:`.sampler.sample`)."""
        return sample(self, call)

    def denoise(self, conditions, *, rules=(), request=None, negative_conditions=None, **settings) -> SampleResult:
        """Build the sampling call for ``conditions`` in core (:func:`smg_sdk.sampling.prepare_sampling`) and run it.

        Keyword arguments are those of :func:`~smg_sdk.sampling.prepare_sampling`.
        """
        call = prepare_sampling(self, conditions, rules=rules, request=request,
                                negative_conditions=negative_conditions, **settings)
        return self.sample(call)

    def velocity(self, attention, latents: torch.Tensor, sigmas: torch.Tensor, **kwargs) -> torch.Tensor:
        """Differentiable velocity prediction for an attention pass; see :func:`.sampler.predict_velocity`."""
        return predict_velocity(self, attention, latents, sigmas, **kwargs)

    def text_position_ids(self, length: int) -> torch.Tensor:
        """``(length, 3)`` RoPE ids of text-side tokens (FLUX: all zeros)."""
        return text_ids(length)

    def adapter_parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        """The trainable LoRA parameters of adapter ``name`` in the transformer, by qualified name."""
        from ...training.trainer import adapter_parameters

        return adapter_parameters(self.transformer, name)

    def modules(self) -> dict[str, torch.nn.Module]:
        """Every model of the backend by component name (what ``to``, freezing and offload act on)."""
        return {name: getattr(self, name) for name in ("transformer", "vae", "text_encoder", "text_encoder_2")}

    def encoding_modules(self) -> list[torch.nn.Module]:
        """The modules that only encode inputs (VAE, CLIP, T5): frozen when a trainer caches encodings."""
        return [self.vae, self.text_encoder, self.text_encoder_2]

    @torch.no_grad()
    def decode(self, packed: torch.Tensor, height: int, width: int, output_type: str = "pil"):
        """Packed latents -> images (``"pil"``, ``"np"``, ``"pt"``), or the latents for ``"latent"``."""
        if output_type == "latent":
            return packed
        from diffusers.image_processor import VaeImageProcessor

        latents = unpack_latents(packed, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = latents / self.vae.config.scaling_factor + self.vae.config.shift_factor
        image = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor * 2)
        return processor.postprocess(image, output_type=output_type)

    # ------------------------------------------------------------------ adapters
    def load_lora_weights(self, path_or_state_dict, adapter_name: str | None = None, weight: float = 1.0, **kwargs) -> str:
        """Load a standard FLUX LoRA for every token; returns the adapter's name.

        This is diffusers' own ``FluxPipeline.load_lora_weights`` on a pipeline sharing this
        backend's modules, so every format it reads (diffusers/peft, kohya ``lora_unet_*`` /
        ``lora_te1_*`` with ``.alpha``, ComfyUI, XLabs, BFL control, fal Kontext) has exactly the
        effect it has in diffusers. ``weight`` scales the LoRA on every component it touches
        (transformer and CLIP text encoder). Loading is all-or-nothing: on any failure the
        adapter is removed from every component and :class:`ModelLoadError` is raised. Files
        must be safetensors (a ``.safetensors`` file, or a folder/repo holding one).
        """
        from ...types import MAX_GUIDANCE, as_float

        weight = as_float(weight, "weight", -MAX_GUIDANCE, MAX_GUIDANCE)
        source = _safetensors_only(path_or_state_dict, kwargs)
        with self.lock:
            before = {key: adapter_names(model) for key, model in self._lora_models().items()}
            taken = set().union(*before.values()) | self.stream_adapters
            if adapter_name is not None and (not isinstance(adapter_name, str) or adapter_name in taken):
                raise ModelLoadError(
                    f"adapter_name {adapter_name!r} is already loaded or not a string; pick another name."
                )
            try:
                name = self._load_global_lora(source, adapter_name, before, kwargs)
            except BaseException as exc:
                self._drop_new_adapters(before)
                if isinstance(exc, SMGError) or not isinstance(exc, Exception):
                    raise
                raise ModelLoadError(
                    f"Could not load LoRA weights from {_label(path_or_state_dict)} into this FLUX "
                    f"({type(exc).__name__}: {exc}); nothing was loaded. Check the file is a FLUX LoRA for this model."
                ) from exc
            self.adapter_weights[name] = weight
            self.reset_adapters()
            set_text_encoder_adapters(self.text_encoder, self.adapter_weights)
        return name

    def _lora_models(self) -> dict[str, Any]:
        """The components a global LoRA file can touch."""
        return {"transformer": self.transformer, "text_encoder": self.text_encoder}

    def _load_global_lora(self, source: Any, adapter_name: str | None, before: dict[str, set[str]],
                          kwargs: dict[str, Any]) -> str:
        """diffusers' loader; returns the new adapter's name (raises if it added none)."""
        self.as_diffusers_pipeline().load_lora_weights(source, adapter_name=adapter_name, **kwargs)
        added = set().union(*(adapter_names(m) - before[k] for k, m in self._lora_models().items()))
        if not added:
            raise ModelLoadError(
                f"The LoRA {_label(source)} matched no layer of this FLUX's transformer or text encoder; "
                "nothing was loaded. Check it was trained for FLUX.1."
            )
        return adapter_name or sorted(added)[0]

    def _drop_new_adapters(self, before: dict[str, set[str]]) -> None:
        """Undo a failed load: remove adapters that were not there before from every component."""
        for key, model in self._lora_models().items():
            for name in adapter_names(model) - before[key]:
                delete_adapter(model, name)
        self.reset_adapters()

    def add_stream_adapter(
        self,
        name: str,
        rank: int = 16,
        alpha: float | None = None,
        target_modules: Sequence[str] | None = None,
        init_lora_weights: bool | str = True,
    ) -> None:
        """A new LoRA adapter that only acts on the streams that name it (``stream.adapter``)."""
        from peft import LoraConfig

        if peft_loaded(self.transformer) and name in self.transformer.peft_config:
            raise BackendError(f"An adapter named {name!r} already exists; pick another name.")
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            target_modules=list(target_modules or DEFAULT_TARGET_MODULES),
            init_lora_weights=init_lora_weights,
        )
        self.transformer.add_adapter(config, adapter_name=name)
        self.stream_adapters.add(name)
        self.reset_adapters()

    def load_stream_adapter(self, name: str, path_or_state_dict) -> None:
        """Load a LoRA file (diffusers format, safetensors) as a stream adapter."""
        from diffusers import FluxPipeline
        from safetensors import SafetensorError

        options: dict[str, Any] = {}
        source = _safetensors_only(path_or_state_dict, options)
        with self.lock:
            try:
                state, alphas, metadata = FluxPipeline.lora_state_dict(
                    source, return_alphas=True, return_lora_metadata=True, **options
                )
                FluxPipeline.load_lora_into_transformer(
                    state, network_alphas=alphas, transformer=self.transformer, adapter_name=name, metadata=metadata
                )
            except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
                raise ModelLoadError(
                    f"Could not load the stream adapter {name!r} from {_label(path_or_state_dict)}: {exc}"
                ) from exc
            self.stream_adapters.add(name)
            self.reset_adapters()

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The adapter's transformer LoRA tensors in diffusers' saved-LoRA key format (without prefix)."""
        if not lora_layers(self.transformer, name):
            raise BackendError(f"No adapter named {name!r} in the transformer.")
        return adapter_tensors(self.transformer, name)

    def save_adapter(self, name: str, folder: str | Path) -> Path:
        """Write adapter ``name`` (its transformer and text-encoder parts) as a diffusers LoRA file.

        ``FluxPipeline.load_lora_weights`` (and :meth:`load_lora_weights`) read it back exactly.
        """
        from diffusers import FluxPipeline

        parts: dict[str, Any] = {}
        for key, model in self._lora_models().items():
            if name in adapter_names(model):
                parts[f"{key}_lora_layers"] = adapter_tensors(model, name)
                parts[f"{key}_lora_adapter_metadata"] = adapter_metadata(model, name)
        if not parts:
            raise BackendError(f"No adapter named {name!r} in the transformer or the text encoder.")
        folder = Path(folder)
        FluxPipeline.save_lora_weights(save_directory=str(folder), **parts)
        return folder / "pytorch_lora_weights.safetensors"

    def transformer_adapter_weights(self) -> dict[str, float]:
        """The global adapters the transformer holds, with their weights (text-encoder-only LoRAs left out)."""
        held = adapter_names(self.transformer)
        return {name: w for name, w in self.adapter_weights.items() if name in held}

    def reset_adapters(self) -> None:
        """The resting state: every global adapter on, every stream adapter off."""
        if peft_loaded(self.transformer):
            activate_adapters(self.transformer, self.transformer_adapter_weights())

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, folder: str | Path, include_base: bool | None = None) -> dict[str, Any]:
        """Save to ``folder``; returns the manifest entry describing how to reload.

        The base model is written as a diffusers folder when it did not come from a folder
        on disk (or ``include_base=True``); otherwise the manifest points at its source, so a
        24 GB FLUX checkpoint is not copied for every saved pipeline.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if include_base is None:
            include_base = self.source is None
        entry: dict[str, Any] = {"type": "flux", "max_sequence_length": self.max_sequence_length}
        if include_base:
            self._save_base(folder / "base")
            entry["base"] = "base"
        else:
            entry["source"] = self.source
        adapters = {}
        for name in sorted(set(self.adapter_weights) | self.stream_adapters):
            path = self.save_adapter(name, folder / "adapters" / name)
            adapters[name] = {
                "file": str(path.relative_to(folder)),
                "stream": name in self.stream_adapters,
                "weight": self.adapter_weights.get(name, 1.0),
            }
        entry["adapters"] = adapters
        return entry

    def _save_base(self, folder: Path) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        pipe = self.as_diffusers_pipeline()
        if any(isinstance(m, BaseTunerLayer) for m in self.transformer.modules()):
            # Write the base weights without LoRA layers: save a clean copy of the transformer.
            base = _transformer_without_adapters(self.transformer)
            from diffusers import FluxPipeline

            pipe = FluxPipeline(**{**self.components, "transformer": base})
        pipe.save_pretrained(str(folder), safe_serialization=True)

    @classmethod
    def from_manifest(cls, entry: dict[str, Any], folder: str | Path, **kwargs) -> "FluxBackend":
        """Rebuild a backend saved with :meth:`save_pretrained` (``entry`` already schema-checked).

        ``base`` and adapter files must lie inside ``folder``; a ``source`` elsewhere is loaded
        only because the caller allowed it (``allow_external``) when loading the pipeline.
        """
        from ...manifest import inside

        folder = Path(folder)
        path = inside(folder, entry["base"], "backend.base") if "base" in entry else entry.get("source")
        if path is None:
            raise ModelLoadError("The saved backend names neither a base folder nor a source path.")
        backend = cls.from_pretrained(path, max_sequence_length=entry.get("max_sequence_length", 512), **kwargs)
        if "base" in entry:
            # The base lives in a saved folder, which a later save may replace: save it whole again
            # rather than by reference to a path that might no longer exist.
            backend.source = None
        for name, info in entry.get("adapters", {}).items():
            file = inside(folder, info["file"], f"backend.adapters[{name!r}].file")
            if not file.is_file():
                raise ModelLoadError(f"Adapter file {file} named in the manifest is missing.")
            if info.get("stream"):
                backend.load_stream_adapter(name, str(file))
            else:
                backend.load_lora_weights(str(file), adapter_name=name, weight=info.get("weight", 1.0))
        return backend


FLUX_LIBRARIES = ("diffusers", "transformers")


def check_model_index(folder: Path) -> None:
    """Refuse a ``model_index.json`` that names components outside diffusers and transformers.

    diffusers imports the library a component names, so a folder could otherwise make loading
    import any installed module; and custom component code is never run.
    """
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(
            f"{folder} has no model_index.json, so it is not a diffusers-format FLUX folder; "
            "point at the folder that holds model_index.json, transformer/, vae/, text_encoder/..."
        )
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{index_file} is not valid JSON ({exc}); restore the model folder.") from exc
    if not isinstance(index, dict):
        raise ModelLoadError(f"{index_file} is not a JSON object; restore the model folder.")
    for key, value in index.items():
        if key.startswith("_"):
            continue
        ok = isinstance(value, list) and len(value) == 2 and (
            value == [None, None]
            or (value[0] in FLUX_LIBRARIES and isinstance(value[1], str) and value[1].isidentifier())
        )
        if not ok:
            raise ModelLoadError(
                f"{index_file}: component {key!r} is {value!r}; a FLUX folder may only name diffusers or "
                "transformers classes. Restore the model folder (custom component code is never loaded)."
            )


def _label(source: Any) -> str:
    return "a state dict" if isinstance(source, dict) else repr(str(source))


def _safetensors_only(source: Any, options: dict[str, Any]) -> Any:
    """A LoRA source diffusers can only read as safetensors: a dict, or a ``.safetensors`` file, folder or
    repo id read with ``use_safetensors=True`` (set in ``options``, which diffusers reads)."""
    if isinstance(source, dict):
        return source
    if options.get("use_safetensors") is False:
        raise ModelLoadError("LoRA weights load from safetensors only; use_safetensors=False is not supported.")
    path = Path(str(source)).expanduser()
    weight_name = options.get("weight_name")
    if (path.is_file() and path.suffix != ".safetensors") or (weight_name and not weight_name.endswith(".safetensors")):
        raise ModelLoadError(
            f"{path if path.is_file() else weight_name} is not a .safetensors file; LoRA weights load from safetensors "
            "only (pickle files can run code). Convert it: safetensors.torch.save_file(state_dict, 'lora.safetensors')."
        )
    options["use_safetensors"] = True  # diffusers then never falls back to pickle
    return str(source)


def _transformer_without_adapters(transformer):
    """A fresh copy of ``transformer`` holding only its base weights (LoRA layers dropped)."""
    clean = type(transformer).from_config(transformer.config).to(transformer.dtype)
    state = {k.replace(".base_layer.", "."): v for k, v in transformer.state_dict().items() if "lora_" not in k}
    clean.load_state_dict(state, strict=True)
    return clean
