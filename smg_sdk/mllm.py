"""Multimodal LLMs (Qwen2.5-VL class) as readers of instruction + reference images.

Two plugins need the same thing from an MLLM and may not import each other: Squeeze-MLLM's
encoder pools the hidden states of every n-th layer per token, split into text and image
tokens per subject; MUSIC's planner samples plans as text. Both get it from here:

    mllm = load_mllm("/models/Qwen2.5-VL-7B-Instruct", dtype=torch.bfloat16, device="cuda")
    inputs = mllm.build_inputs("<1> next to <2> on the beach", [img1, img2], image_size=448)
    states = mllm.hidden_states(inputs, layers=mllm.every_nth_layer(3))  # (3 x ..., 1, L, D)
    inputs.modality, inputs.subject, inputs.prefix_length                 # per-token metadata
    plans = mllm.generate(mllm.build_inputs(..., add_generation_prompt=True), do_sample=True, seed=0)

One :class:`MLLM` holds one model and its processor and keeps no per-call state, so several
components share one instance: :func:`load_mllm` returns the instance already loaded for the
same folder and options while anyone still holds it (``reuse=False`` for a private copy); a
call that names no dtype and no device gets the copy already loaded for that folder, however
it was placed, so a component never loads a second copy of an MLLM the caller preloaded.

Without torchvision (as on the project's machines), transformers 5 cannot build any Qwen-VL
processor: ``Qwen2_5_VLProcessor`` always loads a video processor, and every video processor
needs torchvision. :func:`load_processor` then falls back to the same processor class without
its video part (:func:`image_only_processor_class`), with the PIL image processor; images,
which are all the SDK feeds an MLLM, are processed exactly as by the full processor.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .errors import ConditionError, ModelLoadError, RequestError
from .placement import parse_dtype

#: Values of :attr:`ChatInputs.modality`.
TEXT_TOKEN = 0
IMAGE_TOKEN = 1

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --- inputs -----------------------------------------------------------------------------


@dataclass
class ChatInputs:
    """One chat-formatted request as the model reads it, plus per-token metadata.

    ``tensors`` are the processor's outputs (``input_ids`` and ``attention_mask`` of shape
    ``(1, L)``, ``pixel_values``, ``image_grid_thw``...), ready for ``model(**tensors)``.
    Metadata is read off ``input_ids``, never guessed from strings:

    - ``modality`` ``(L,)``: ``IMAGE_TOKEN`` (1) for the image placeholder tokens the vision
      features replace, ``TEXT_TOKEN`` (0) for everything else (template tokens, text, and
      the ``<|vision_start|>``/``<|vision_end|>`` markers around each image).
    - ``subject`` ``(L,)``: the 0-based index of the reference image an image token belongs
      to, -1 for text tokens.
    - ``prefix_length``: how many leading tokens the chat template adds before the user
      content (system turn and ``<|im_start|>user\\n`` for Qwen); ``input_ids[0, :prefix_length]``
      can be dropped by callers that only want the user's content.
    """

    tensors: dict[str, torch.Tensor]
    modality: torch.Tensor
    subject: torch.Tensor
    prefix_length: int
    tokens_per_image: list[int] = field(default_factory=list)
    text: str = ""

    @property
    def input_ids(self) -> torch.Tensor:
        """``(1, L)`` token ids."""
        return self.tensors["input_ids"]

    @property
    def length(self) -> int:
        """L, the number of tokens."""
        return int(self.input_ids.shape[-1])

    @property
    def num_images(self) -> int:
        return len(self.tokens_per_image)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ChatInputs:
        """A copy with tensors on ``device``; floating tensors (pixels) cast to ``dtype``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device) if device is not None else t

        return replace(self, tensors={k: move(v) if torch.is_tensor(v) else v for k, v in self.tensors.items()})


# --- loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MLLMLoadConfig:
    """How an :class:`MLLM` was loaded (also the key under which it is shared)."""

    path: str
    torch_dtype: str | None = None
    device: str | None = None
    trust_remote_code: bool = False
    local_files_only: bool = True
    quantization: str | None = None
    """The quantization config's JSON (``to_json_string()``), None for none."""


_SHARED: weakref.WeakValueDictionary[MLLMLoadConfig, MLLM] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def load_mllm(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    torch_dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = True,
    reuse: bool = True,
    quantization_config: Any = None,
) -> MLLM:
    """Load an image-text model that returns hidden states, and its processor, from ``path``.

    ``path`` is a local folder (``config.json``, safetensors weights, processor files) or,
    with an already-populated Hugging Face cache, a repo id. Nothing is downloaded unless
    ``local_files_only=False``. The model class is ``AutoModelForImageTextToText``, else
    ``Qwen2_5_VLForConditionalGeneration``; remote code runs only if ``trust_remote_code``
    is passed. ``dtype`` (``torch_dtype`` is its older name) and ``device`` say how and where
    the weights load. With ``reuse`` (default), a second call with the same arguments returns
    the same :class:`MLLM` while it is alive, so components share one copy of the weights;
    a call with neither ``dtype``, ``device`` nor ``quantization_config`` returns any live copy
    of the same folder. ``quantization_config`` (a transformers ``BitsAndBytesConfig``,
    ``TorchAoConfig``...) goes to ``from_pretrained`` as it is; bitsandbytes needs a CUDA GPU.
    Raises :class:`ModelLoadError` if there is no such folder or it holds no loadable model,
    or if both ``dtype`` and ``torch_dtype`` are given.
    """
    source = _check_source(path)
    if dtype is not None and torch_dtype is not None:
        raise ModelLoadError("Pass dtype or torch_dtype (its older name), not both.")
    dtype = parse_dtype(dtype if dtype is not None else torch_dtype, "dtype" if dtype is not None else "torch_dtype",
                        ModelLoadError)
    config = MLLMLoadConfig(
        path=source,
        torch_dtype=None if dtype is None else str(dtype).removeprefix("torch."),
        device=None if device is None else str(torch.device(device)),
        trust_remote_code=bool(trust_remote_code),
        local_files_only=bool(local_files_only),
        quantization=None if quantization_config is None else _quantization_key(quantization_config),
    )
    placed = dtype is not None or device is not None or quantization_config is not None
    with _SHARED_LOCK:
        if reuse and (shared := _shared_copy(config, placed)) is not None:
            return shared
        model = _load_model(source, dtype, trust_remote_code, local_files_only, quantization_config)
        processor = load_processor(source, trust_remote_code=trust_remote_code, local_files_only=local_files_only)
        if device is not None:
            model = model.to(device)
        mllm = MLLM(model.eval(), processor, config)
        if reuse:
            _SHARED[config] = mllm
        return mllm


def _shared_copy(config: MLLMLoadConfig, placed: bool) -> "MLLM | None":
    """The live MLLM loaded with ``config``; unless ``placed``, any live copy of the same folder."""
    if (shared := _SHARED.get(config)) is not None or placed:
        return shared
    def unplaced(key: MLLMLoadConfig) -> MLLMLoadConfig:
        return replace(key, torch_dtype=None, device=None, quantization=None)

    return next((m for key, m in list(_SHARED.items()) if unplaced(key) == unplaced(config)), None)


def _quantization_key(quantization_config: Any) -> str:
    to_json = getattr(quantization_config, "to_json_string", None)
    return to_json() if callable(to_json) else repr(quantization_config)


def _check_source(path: str | Path) -> str:
    """A local model folder as an absolute path, or a repo id to look up in the HF cache."""
    text = str(path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"{local} is a file; pass the model folder (the one holding config.json).")
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"{local} is not a model folder: it has no config.json. Pass the folder that holds config.json, "
                "the safetensors weights and the processor files (e.g. a Qwen2.5-VL download)."
            )
        return str(local.resolve())
    if isinstance(path, Path) or not _REPO_ID.match(text):
        raise ModelLoadError(
            f"No model folder at {local}. Pass an existing local folder, or a repo id already in the Hugging "
            "Face cache; for the embedded tiny Qwen2.5-VL use smg_sdk.presets.tiny.tiny_qwen_vl_path()."
        )
    return text


def _dtype_kwarg() -> str:
    """transformers >= 4.56 takes ``dtype``; older releases only ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_model(source: str, dtype: torch.dtype | None, trust_remote_code: bool, local_files_only: bool,
                quantization_config: Any = None):
    """``AutoModelForImageTextToText``; for Qwen2-family configs it does not map (older
    transformers), ``Qwen2_5_VLForConditionalGeneration``."""
    from transformers import AutoModelForImageTextToText, PretrainedConfig, Qwen2_5_VLForConditionalGeneration

    kwargs: dict[str, Any] = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code,
                              "use_safetensors": True}  # never unpickle a folder's weights
    if dtype is not None:
        kwargs[_dtype_kwarg()] = dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    hint = "" if Path(source).is_dir() else " (not a local folder; is it in the Hugging Face cache?)"
    try:
        config, _ = PretrainedConfig.get_config_dict(source, local_files_only=local_files_only)
        return AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except ValueError as exc:  # the auto class does not know this config
        model_type = str(config.get("model_type", ""))
        if not model_type.startswith("qwen2"):
            raise ModelLoadError(
                f"{source} holds a {model_type or 'unknown'!r} model, not an image-text model transformers can "
                f"load ({str(exc).splitlines()[0]}). Pass a Qwen2.5-VL-class folder"
                + ("" if trust_remote_code else ", or pass trust_remote_code as True if you trust the model's own code")
                + "."
            ) from exc
    except (OSError, RuntimeError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"Could not load the MLLM from {source}{hint}: {exc}") from exc
    try:
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(source, **kwargs)
    except (OSError, RuntimeError, KeyError, ImportError, ValueError) as exc:
        raise ModelLoadError(f"Could not load the MLLM from {source}{hint}: {exc}") from exc


def load_processor(source: str | Path, *, trust_remote_code: bool = False, local_files_only: bool = True):
    """The model's processor via ``AutoProcessor``; without torchvision, its image-only variant."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    try:
        return AutoProcessor.from_pretrained(
            str(source), local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ImportError/AttributeError here
        if is_torchvision_available():
            raise ModelLoadError(f"Could not load the processor from {source}: {exc}") from exc
        cls = _processor_class(str(source), trust_remote_code, local_files_only)
        if cls is None or "video_processor" not in cls.get_attributes():
            raise ModelLoadError(f"Could not load the processor from {source}: {exc}") from exc
        try:
            return image_only_processor_class(cls).from_pretrained(
                str(source), local_files_only=local_files_only, trust_remote_code=trust_remote_code
            )
        except Exception as inner:  # noqa: BLE001
            raise ModelLoadError(f"Could not load the processor from {source}: {inner}") from inner


def _processor_class(source: str, trust_remote_code: bool, local_files_only: bool) -> type | None:
    """The processor class a folder names (processor/preprocessor/tokenizer config, else its model type)."""
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name

    folder = Path(source)
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = folder / name
        if file.is_file():
            try:
                class_name = json.loads(file.read_text(encoding="utf-8")).get("processor_class")
            except (ValueError, AttributeError):
                continue
            if class_name and (cls := processor_class_from_name(class_name)) is not None:
                return cls
    try:
        config = AutoConfig.from_pretrained(
            source, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
        return PROCESSOR_MAPPING[type(config)]
    except (KeyError, OSError, ValueError):
        return None


@functools.cache
def image_only_processor_class(processor_cls: type) -> type:
    """``processor_cls`` without its ``video_processor`` attribute.

    Same name and behaviour for text and images; it neither needs nor loads a video
    processor, so it works without torchvision, and ``save_pretrained`` writes the same files
    as ``processor_cls`` (under ``processor_cls``'s name).
    """
    keep = [a for a in processor_cls.get_attributes() if a != "video_processor"]

    def get_attributes(cls) -> list[str]:
        return list(keep)

    return type(
        processor_cls.__name__,
        (processor_cls,),
        {
            "get_attributes": classmethod(get_attributes),
            "__module__": __name__,
            "__doc__": f"{processor_cls.__name__} for images and text only (no video processor, no torchvision).",
        },
    )


# --- the model --------------------------------------------------------------------------


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` holding the MLLM's lock (its tokenizer and the forked RNG are shared state)."""

    @functools.wraps(method)
    def wrapper(self: "MLLM", *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class MLLM:
    """A loaded MLLM and its processor: chat inputs, per-layer hidden states, generated text.

    Stateless between calls, so one instance can serve several components at once; calls
    from several threads take turns (:attr:`lock`).
    """

    def __init__(self, model: torch.nn.Module, processor: Any, config: MLLMLoadConfig | None = None) -> None:
        self.model = model
        self.processor = processor
        self.config = config or MLLMLoadConfig(path=str(getattr(model, "name_or_path", "")))
        text_config = model.config.get_text_config()
        self.num_layers: int = int(text_config.num_hidden_layers)
        self.hidden_size: int = int(text_config.hidden_size)
        self.image_token_id: int = self._find_image_token_id()
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return (
            f"MLLM({type(self.model).__name__}, layers={self.num_layers}, hidden={self.hidden_size}, "
            f"path={self.config.path!r})"
        )

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the model computes: its offload hooks' device once offloaded (see :mod:`smg_sdk.placement`)."""
        from .placement import execution_device

        return execution_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MLLM":
        """Move the model to ``device`` and/or cast it to ``dtype`` (None leaves that as it is)."""
        self.model.to(device=device, dtype=dtype)
        return self

    def _find_image_token_id(self) -> int:
        token_id = getattr(self.processor, "image_token_id", None)
        if token_id is None:
            token_id = getattr(self.model.config, "image_token_id", None)
        if token_id is None and (token := getattr(self.processor, "image_token", None)) is not None:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None:
            raise ModelLoadError(
                f"Cannot tell which token stands for image features in {self.config.path}: neither the processor "
                "nor the model config has an image_token_id."
            )
        return int(token_id)

    def every_nth_layer(self, n: int = 3) -> list[int]:
        """Hidden-state indices ``n, 2n, ...`` up to :attr:`num_layers` (embeddings excluded)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(f"n must be a positive integer, got {n!r}.")
        return list(range(n, self.num_layers + 1, n))

    # -- inputs --------------------------------------------------------------------------

    @_locked
    def build_inputs(
        self,
        instruction: str,
        images: Sequence[Image.Image] = (),
        *,
        image_size: int | None = None,
        system: str | None = None,
        add_generation_prompt: bool = False,
    ) -> ChatInputs:
        """One user turn "Picture 1: <image> Picture 2: <image> ... <instruction>", tokenized.

        Images are resized to ``image_size`` x ``image_size`` first when given (the processor
        may still round the size to its patch grid). ``system`` replaces the template's
        default system prompt. ``add_generation_prompt`` opens the assistant turn (for
        :meth:`generate`).
        """
        if not isinstance(instruction, str):
            raise RequestError(f"instruction must be a string, got {type(instruction).__name__}.")
        images = list(images)
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise RequestError(f"images[{i}] is a {type(image).__name__}; pass PIL images.")
        bad_size = isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
        if image_size is not None and bad_size:
            raise RequestError(f"image_size must be a positive integer or None, got {image_size!r}.")
        images = [self._prepare_image(image, image_size) for image in images]

        content: list[dict[str, str]] = []
        for i in range(len(images)):
            content.append({"type": "text", "text": f"{' ' if i else ''}Picture {i + 1}: "})
            content.append({"type": "image"})
        if instruction or not images:
            content.append({"type": "text", "text": (" " if images else "") + instruction})
        text = self._render(content, system, add_generation_prompt)
        tensors = dict(self.processor(text=[text], images=images or None, return_tensors="pt"))
        ids = tensors["input_ids"][0]

        modality = (ids == self.image_token_id).long()
        counts = self._tokens_per_image(tensors, modality, len(images))
        subject = torch.full_like(ids, -1)
        positions = modality.nonzero().flatten()
        subject[positions] = torch.repeat_interleave(torch.arange(len(images)), torch.tensor(counts, dtype=torch.long))
        return ChatInputs(
            tensors=tensors,
            modality=modality,
            subject=subject,
            prefix_length=self._prefix_length(ids, system),
            tokens_per_image=counts,
            text=text,
        )

    @staticmethod
    def _prepare_image(image: Image.Image, size: int | None) -> Image.Image:
        image = image.convert("RGB")
        return image if size is None else image.resize((size, size), Image.Resampling.BICUBIC)

    def _messages(self, content: list[dict[str, str]], system: str | None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": content})
        return messages

    def _render(self, content: list[dict[str, str]], system: str | None, add_generation_prompt: bool) -> str:
        text = self.processor.apply_chat_template(
            self._messages(content, system), tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return text[0] if isinstance(text, list) else text

    def _tokens_per_image(self, tensors: dict[str, torch.Tensor], modality: torch.Tensor, n: int) -> list[int]:
        """Image tokens per image: from the patch grid when the processor gives one, else from
        the runs of consecutive image tokens."""
        total = int(modality.sum())
        grid = tensors.get("image_grid_thw")
        merge = getattr(getattr(self.processor, "image_processor", None), "merge_size", None)
        if grid is not None and merge:
            counts = [int(g.prod()) // (merge * merge) for g in grid]
        else:
            edges = torch.diff(modality, prepend=modality.new_zeros(1), append=modality.new_zeros(1))
            counts = ((edges == -1).nonzero().flatten() - (edges == 1).nonzero().flatten()).tolist()
        if len(counts) != n or sum(counts) != total:
            raise ConditionError(
                f"The processor placed {total} image tokens for {n} image(s) ({counts} expected); the chat "
                "template and the processor disagree about image placeholders."
            )
        return counts

    def _prefix_length(self, ids: torch.Tensor, system: str | None) -> int:
        """Tokens before the user content, from token ids: the template rendered around two
        different one-letter contents agrees exactly on its prefix, and so must ``ids``."""
        refs = []
        for letter in ("a", "b"):
            rendered = self._render([{"type": "text", "text": letter}], system, add_generation_prompt=False)
            refs.append(self.tokenizer(rendered)["input_ids"])
        n = _common_prefix(refs[0], refs[1])
        return _common_prefix(ids.tolist(), refs[0][:n])

    # -- forward -------------------------------------------------------------------------

    @_locked
    def hidden_states(
        self, inputs: ChatInputs, layers: Sequence[int] | None = None, *, grad: bool = False
    ) -> torch.Tensor:
        """Hidden states of the selected layers, stacked: ``(len(layers), B, L, D)``.

        Indices follow transformers' ``output_hidden_states`` tuple of ``num_layers + 1``
        entries: 0 is the input embeddings (vision features already placed at the image
        tokens), ``i`` the output of decoder layer ``i``, and ``num_layers`` the last layer's
        output after the final norm (transformers returns the normed one last). Negative
        indices count from the end. ``None`` selects all. Runs under ``torch.no_grad`` unless
        ``grad=True`` (to train through the MLLM).
        """
        total = self.num_layers + 1
        selected = list(range(total)) if layers is None else [int(i) for i in layers]
        if not selected:
            raise RequestError("layers is empty; pass at least one hidden-state index, or None for all.")
        bad = [i for i in selected if not -total <= i < total]
        if bad:
            raise RequestError(f"Layer indices {bad} are out of range for {total} hidden states (0..{total - 1}).")
        from .placement import onload

        onload(self.model)  # the backbone is called, not the model's own forward its offload hook wraps
        tensors = inputs.to(self.device, self.dtype).tensors
        context = contextlib.nullcontext() if grad else torch.no_grad()
        with context:
            outputs = self._backbone()(**tensors, output_hidden_states=True, use_cache=False, return_dict=True)
            states = outputs.hidden_states
            if states is None or len(states) != total:
                raise ModelLoadError(
                    f"{type(self.model).__name__} returned {0 if states is None else len(states)} hidden states, "
                    f"expected {total} (num_layers + 1)."
                )
            return torch.stack([states[i] for i in selected])

    def _backbone(self) -> torch.nn.Module:
        """The model without its LM head (no vocabulary logits needed for hidden states)."""
        base = getattr(self.model, "base_model", None)
        return base if isinstance(base, torch.nn.Module) and base is not self.model else self.model

    @_locked
    def generate(
        self,
        inputs: ChatInputs,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        do_sample: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Text the model writes after ``inputs`` (new tokens only, special tokens removed).

        Reproducible: sampling draws from a forked RNG seeded by ``seed`` (or by a number drawn
        from ``generator``), so the global RNG is left untouched. Build ``inputs`` with
        ``add_generation_prompt=True`` to get an assistant answer.
        """
        if seed is not None and generator is not None:
            raise RequestError("Pass either seed or generator, not both.")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise RequestError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        if do_sample and not temperature > 0:
            raise RequestError(f"temperature must be > 0 when sampling, got {temperature!r}.")
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **generate_kwargs}
        if do_sample:
            kwargs["temperature"] = float(temperature)
        tensors = inputs.to(self.device, self.dtype).tensors
        device = self.device
        fork = {"devices": []} if device.type == "cpu" else {"devices": [device.index or 0], "device_type": device.type}
        with torch.random.fork_rng(**fork), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(**tensors, **kwargs)
        new_tokens = output[:, tensors["input_ids"].shape[-1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


__all__ = [
    "IMAGE_TOKEN",
    "TEXT_TOKEN",
    "ChatInputs",
    "MLLM",
    "MLLMLoadConfig",
    "image_only_processor_class",
    "load_mllm",
    "load_processor",
]
